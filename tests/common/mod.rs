//! Helpers for the service's integration tests: start the real `aegis serve` on a random
//! loopback port with a temporary data directory, talk HTTP to it, stop it (gracefully or with
//! `kill -9`).
//!
//! The guest image is built once into the data directory the other integration tests share
//! (`AEGIS_TEST_DATA_DIR`, default `/var/tmp/aegis-test-data`): each temporary data directory's
//! `images` is a symbolic link to its `images/`, so no test rebuilds it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Data directory holding the shared guest image (only its `images/` is used here).
pub fn shared_data_dir() -> PathBuf {
    std::env::var_os("AEGIS_TEST_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/aegis-test-data"))
}

/// Builds the shared `linux` image when it is missing (about a minute, once per machine).
pub fn shared_images() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            let data = aegis::paths::DataDir::new(shared_data_dir());
            std::fs::create_dir_all(data.images()).expect("create shared image dir");
            aegis::image::ImageStore::new(&data)
                .ensure("linux", &mut |line: &str| eprintln!("image: {line}"))
                .expect("build the shared linux guest image");
            data.images()
        })
        .clone()
}

/// A temporary directory holding `data/` (the data directory), `config.json` and `server.log`.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    /// With the shared guest image linked in.
    pub fn new() -> Sandbox {
        let s = Sandbox::without_image();
        std::os::unix::fs::symlink(shared_images(), s.data().join("images")).expect("link images");
        s
    }

    /// A data directory with no guest image.
    pub fn without_image() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("aegis-api-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir data");
        Sandbox { dir }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Opens the service's database (for facts the API does not show).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data().join("aegis.db")).expect("open aegis.db")
    }

    /// Starts `aegis serve` with this config and concurrency.
    pub fn serve(&self, config: Value, concurrency: usize) -> Server {
        Server::start(self, config, concurrency)
    }
}

/// A running `aegis serve`.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub token: Option<String>,
    agent: ureq::Agent,
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error reply of exactly `{"error": {"code", "message"}}`.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
        let error = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{body}"));
        assert_eq!(error.len(), 2, "{body}");
        assert_eq!(error["code"], code, "{body}");
        let message = error["message"].as_str().unwrap_or_default().to_string();
        assert!(!message.is_empty(), "{body}");
        message
    }
}

impl Server {
    fn start(sandbox: &Sandbox, config: Value, concurrency: usize) -> Server {
        let config_path = sandbox.dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sandbox.dir.path().join("server.log"))
            .expect("open log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_aegis"))
            .arg("--data-dir")
            .arg(sandbox.data())
            .arg("--config")
            .arg(&config_path)
            .args(["serve", "--listen", "127.0.0.1:0", "--concurrency"])
            .arg(concurrency.to_string())
            .env("AEGIS_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start aegis serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(base) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_string)
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aegis serve did not start: {line:?}\n{}", sandbox.log());
        };
        let token = config["service"]["api_tokens"][0]
            .as_str()
            .map(str::to_string);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            child: Some(child),
            base,
            token,
            agent,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map_or(0, |c| i32::try_from(c.id()).unwrap_or(i32::MAX))
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("wait");
        }
    }

    /// SIGTERM; returns without waiting.
    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let mut child = self.child.take().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("aegis serve did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Any request; `token` adds the server's bearer token.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        self.request_with(method, path, content_type, body, self.token.as_deref())
    }

    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Reply {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let request = builder.body(body.unwrap_or_default()).expect("request");
        let mut response = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let status = response.status().as_u16();
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .expect("read body");
        Reply {
            status,
            body,
            headers,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, None)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            "POST",
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
    }

    /// Submits a script as JSON; returns the analysis id.
    pub fn submit(&self, script: &str, name: &str, extra: Value) -> String {
        let mut body = json!({"file_data": b64(script.as_bytes()), "file_name": name,
            "analysis_timeout": 30});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let reply = self.post_json("/analyze", &body);
        assert_eq!(
            reply.status,
            202,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let json = reply.json();
        assert_eq!(json["status"], "queued");
        json["analysis_id"]
            .as_str()
            .expect("analysis_id")
            .to_string()
    }

    pub fn result(&self, id: &str) -> Value {
        let reply = self.get(&format!("/results/{id}"));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// Polls until the analysis is in one of `statuses`.
    pub fn wait_for(&self, id: &str, statuses: &[&str], limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let r = self.result(id);
            if statuses.iter().any(|s| r["status"] == *s) {
                return r;
            }
            assert!(
                started.elapsed() < limit,
                "{id} still {} after {limit:?}",
                r["status"]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_terminal(&self, id: &str) -> Value {
        self.wait_for(
            id,
            &["completed", "failed", "cancelled"],
            Duration::from_secs(90),
        )
    }
}

impl Drop for Server {
    /// SIGTERM first, so running sandboxes are torn down by the service; SIGKILL after 10 s.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `multipart/form-data` body: `(name, file name, content)` per part.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "aegis-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, file_name, content) in parts {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        )
        .unwrap();
        if let Some(f) = file_name {
            write!(
                body,
                "; filename=\"{f}\"\r\nContent-Type: application/octet-stream"
            )
            .unwrap();
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Sends raw bytes on a fresh connection and returns what came back before it closed (or
/// `limit` passed).
pub fn raw_exchange(base: &str, request: &[u8], limit: Duration) -> (String, Duration) {
    let addr = base.trim_start_matches("http://");
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(limit)).unwrap();
    let _ = stream.write_all(request);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).contains("}}") {
            break;
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

/// A shell script that writes `content` to `/tmp/<tag>.txt` and then sleeps `sleep` seconds.
pub fn script(tag: &str, content: &str, sleep: &str) -> String {
    format!("#!/bin/sh\necho '{content}' > /tmp/{tag}.txt\nsleep {sleep}\n")
}

/// The paths of the files a report says the sample created.
pub fn created_paths(report: &Value) -> Vec<String> {
    report["files"]["created"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["path"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `path` of a test tree relative to the crate (docs/openapi.json and the like).
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
