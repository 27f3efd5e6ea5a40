//! The orchestrator's own image: the Dockerfile builds (from the local Debian base and the
//! binary under test, as on a machine without registry access), and a container of it serves
//! `/health` on a loopback port mapping and runs a submitted sample in a sibling container of
//! the engine whose socket it was given. Needs a reachable Docker Engine and mmdebstrap (for the base image).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::container::{Config, CreateContainerOptions, RemoveContainerOptions};
use bollard::image::BuildImageOptions;
use bollard::models::{HostConfig, PortBinding};
use bollard::Docker;
use futures_util::StreamExt;

const BASE: &str = "aegis-local/debian:bookworm";
const TAG: &str = "aegisai/sandbox-orchestrator:test";

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The build context: the Dockerfile, its docker/ files and the binary under test.
fn context() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let files = [
        ("Dockerfile", repo("Dockerfile")),
        ("docker/config.json", repo("docker/config.json")),
        ("docker/entrypoint.sh", repo("docker/entrypoint.sh")),
        ("docker/guest/README.md", repo("docker/guest/README.md")),
        ("aegis", env!("CARGO_BIN_EXE_aegis").into()),
    ];
    for (name, path) in files {
        // Plain entries: the classic builder refuses GNU sparse headers.
        let bytes = std::fs::read(&path).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(bytes.len() as u64);
        h.set_mode(if name.ends_with(".sh") || name == "aegis" {
            0o755
        } else {
            0o644
        });
        h.set_mtime(0);
        tar.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap()
}

async fn build(docker: &Docker) {
    let options = BuildImageOptions {
        t: TAG.to_string(),
        rm: true,
        forcerm: true,
        buildargs: HashMap::from([
            ("BASE_IMAGE".to_string(), BASE.to_string()),
            ("BUILD_IMAGE".to_string(), BASE.to_string()),
            ("PREBUILT".to_string(), "aegis".to_string()),
        ]),
        labels: HashMap::from([("io.aegisai.sandbox".to_string(), "1".to_string())]),
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(context().into()));
    let mut log = String::new();
    while let Some(item) = stream.next().await {
        let info = item.unwrap_or_else(|e| panic!("build: {e}\n{log}"));
        if let Some(err) = info.error {
            panic!("build failed: {err}\n{log}");
        }
        log.push_str(info.stream.as_deref().unwrap_or(""));
    }
}

/// Removes the service's container however the test ends.
struct Removed<'a> {
    rt: &'a tokio::runtime::Runtime,
    docker: &'a Docker,
    name: String,
}

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let remove = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let _ = self
            .rt
            .block_on(self.docker.remove_container(&self.name, Some(remove)));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(docker: &Docker, name: &str, port: u16) {
    let bindings = HashMap::from([(
        "8002/tcp".to_string(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(port.to_string()),
        }]),
    )]);
    let config = Config {
        image: Some(TAG.to_string()),
        labels: Some(HashMap::from([(
            "io.aegisai.sandbox".to_string(),
            "1".to_string(),
        )])),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            // The guest image of the shared test data directory, as docs/backends.md shows
            // for an image built without one.
            binds: Some(vec![
                "/var/run/docker.sock:/var/run/docker.sock".into(),
                format!(
                    "{}:/var/lib/aegis/images:ro",
                    support::data_dir().join("images").display()
                ),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: name.to_string(),
        platform: None,
    };
    docker
        .create_container(Some(options), config)
        .await
        .expect("create");
    docker
        .start_container::<String>(name, None)
        .await
        .expect("start");
}

/// Submits a script to the containerised service and waits for its report.
fn analyze_through(agent: &ureq::Agent, port: u16) -> serde_json::Value {
    use base64::Engine as _;
    let script = b"#!/bin/sh\necho from a sibling container\necho x > /tmp/mark\n";
    let body = serde_json::json!({
        "file_data": base64::engine::general_purpose::STANDARD.encode(script),
        "file_name": "mark.sh",
        "analysis_timeout": 30,
    });
    let base = format!("http://127.0.0.1:{port}");
    let mut r = agent
        .post(format!("{base}/analyze"))
        .send_json(&body)
        .unwrap();
    let submitted: serde_json::Value = r.body_mut().read_json().unwrap();
    let id = submitted["analysis_id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let mut r = agent.get(format!("{base}/results/{id}")).call().unwrap();
        let v: serde_json::Value = r.body_mut().read_json().unwrap();
        match v["status"].as_str() {
            Some("completed") => return v["report"].clone(),
            Some("failed") => panic!("analysis failed: {v:#}"),
            _ if start.elapsed() > Duration::from_secs(120) => panic!("no report: {v:#}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn orchestrator_image_builds_serves_health_and_runs_an_analysis_in_a_sibling_container() {
    let base = std::process::Command::new(repo("scripts/docker-base.sh"))
        .status()
        .expect("scripts/docker-base.sh runs");
    assert!(base.success(), "no local Debian base image");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let docker = Docker::connect_with_unix_defaults().unwrap();
    let docker = rt.block_on(docker.negotiate_version()).unwrap();
    rt.block_on(build(&docker));

    let name = format!("aegis-orchestrator-test-{}", uuid::Uuid::new_v4());
    let port = free_port();
    let _removed = Removed {
        rt: &rt,
        docker: &docker,
        name: name.clone(),
    };
    rt.block_on(serve(&docker, &name, port));
    let url = format!("http://127.0.0.1:{port}/health");
    let start = Instant::now();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let (status, health) = loop {
        match agent.get(&url).call() {
            Ok(mut r) => {
                let status = r.status().as_u16();
                break (
                    status,
                    r.body_mut().read_json::<serde_json::Value>().unwrap(),
                );
            }
            Err(_) if start.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(250))
            }
            Err(e) => panic!("{url} never answered: {e}"),
        }
    };
    let report = analyze_through(&agent, port);

    assert_eq!(report["environment"]["backend"], "docker", "{report:#}");
    assert_eq!(report["environment"]["network"], "none");
    assert_eq!(
        report["output"]["stdout"]["text"],
        "from a sibling container\n"
    );
    let created = report["files"]["created"][0]["path"].as_str();
    assert_eq!(created, Some("/tmp/mark"), "{report:#}");
    assert_eq!(status, 200, "{health:#}");
    assert_eq!(health["reasons"], serde_json::json!([]), "{health:#}");
    let docker_backend = &health["backends"]["docker"];
    assert_eq!(docker_backend["available"], true, "{health:#}");
    assert!(
        docker_backend["engine"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{health:#}"
    );
}
