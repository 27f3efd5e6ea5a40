//! HTTP: requests parsed with httparse and answered, as INetSim does, with a small benign
//! body whose type follows the extension of the requested path.

use sha2::{Digest, Sha256};

/// Largest request head read; a longer one is answered 431 and the connection closed.
pub const MAX_HEAD: usize = 64 << 10;

/// A path that serves that many zero bytes (`/.aegis/bulk/<bytes>`, at most [`MAX_BULK`]):
/// the benchmark's bulk download. Nothing else in the simulated internet is large.
const BULK_PREFIX: &str = "/.aegis/bulk/";
pub const MAX_BULK: u64 = 256 << 20;

/// The methods that start an HTTP request.
const METHODS: &[&str] = &[
    "GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ",
];

/// Whether the first bytes of a stream look like an HTTP request.
pub fn looks_like_http(first: &[u8]) -> bool {
    METHODS
        .iter()
        .any(|m| first.len() >= m.len() && first[..m.len()].eq_ignore_ascii_case(m.as_bytes()))
}

/// One request, as recorded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Bytes of the body announced by Content-Length (0 without one).
    pub body_len: u64,
    pub chunked: bool,
    pub keep_alive: bool,
}

/// The result of looking at the bytes received so far.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A complete head of `len` bytes.
    Head(Request, usize),
    /// Not HTTP, or a head too large.
    Invalid,
}

/// Parses a request head.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Invalid,
    };
    let mut r = Request {
        method: req.method.unwrap_or_default().to_string(),
        path: req.path.unwrap_or_default().to_string(),
        keep_alive: req.version == Some(1),
        ..Default::default()
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).into_owned();
        match h.name.to_ascii_lowercase().as_str() {
            "host" => r.host = Some(value.clone()),
            "user-agent" => r.user_agent = Some(value.clone()),
            "content-length" => r.body_len = value.trim().parse().unwrap_or(0),
            "transfer-encoding" => r.chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => r.keep_alive = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
        r.headers.push((h.name.to_string(), value));
    }
    Parsed::Head(r, len)
}

impl Request {
    /// The full URL: scheme, host (from the Host header, else the address connected to).
    pub fn url(&self, dst: &str, port: u16) -> String {
        if self.path.starts_with("http://") || self.path.starts_with("https://") {
            return self.path.clone();
        }
        let host = match &self.host {
            Some(h) => h.clone(),
            None if port == 80 => dst.to_string(),
            None => format!("{dst}:{port}"),
        };
        format!("http://{host}{}", self.path)
    }
}

/// The response to send: status line and headers, then either `body` or `zeros` zero bytes.
#[derive(Debug)]
pub struct Response {
    pub head: Vec<u8>,
    pub body: &'static [u8],
    pub zeros: u64,
    pub status: u16,
    pub content_type: &'static str,
}

/// Builds the answer to a request.
pub fn respond(req: &Request) -> Response {
    let path = req.path.split(['?', '#']).next().unwrap_or("/");
    let (status, reason, content_type, body, zeros) = if let Some(n) = bulk_size(path) {
        (200, "OK", "application/octet-stream", &b""[..], n)
    } else {
        let (ct, body) = body_for(path);
        (200, "OK", ct, body, 0)
    };
    let len = body.len() as u64 + zeros;
    let connection = if req.keep_alive {
        "keep-alive"
    } else {
        "close"
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: nginx\r\nContent-Type: {content_type}\r\n\
         Content-Length: {len}\r\nConnection: {connection}\r\n\r\n"
    );
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    Response {
        head: head.into_bytes(),
        body: if head_only { b"" } else { body },
        zeros: if head_only { 0 } else { zeros },
        status,
        content_type,
    }
}

fn bulk_size(path: &str) -> Option<u64> {
    let n: u64 = path.strip_prefix(BULK_PREFIX)?.parse().ok()?;
    Some(n.min(MAX_BULK))
}

/// A 1x1 transparent GIF.
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
/// An empty zip archive (end of central directory only).
const ZIP: &[u8] =
    b"PK\x05\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
const HTML: &[u8] =
    b"<html><head><title>Welcome</title></head><body><p>It works.</p></body></html>\n";
const TEXT: &[u8] = b"ok\n";
const SCRIPT: &[u8] = b"#!/bin/sh\n# simulated internet: a harmless placeholder script\nexit 0\n";
/// Bytes no loader runs: a placeholder for binaries.
const BINARY: &[u8] = b"AEGIS-SIMULATED-INTERNET placeholder, not an executable\n";

/// Content type and body by the path's extension.
fn body_for(path: &str) -> (&'static str, &'static [u8]) {
    let name = path.rsplit('/').next().unwrap_or("");
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "" | "html" | "htm" | "php" | "asp" | "aspx" | "jsp" => ("text/html", HTML),
        "txt" | "log" | "cfg" | "conf" | "ini" => ("text/plain", TEXT),
        "json" => ("application/json", b"{}\n"),
        "xml" => ("application/xml", b"<?xml version=\"1.0\"?><ok/>\n"),
        "js" => ("application/javascript", b"// ok\n"),
        "css" => ("text/css", b"/* ok */\n"),
        "gif" | "png" | "jpg" | "jpeg" | "ico" | "bmp" => ("image/gif", GIF),
        "zip" | "jar" | "apk" => ("application/zip", ZIP),
        "sh" | "bash" | "py" | "pl" => ("text/x-shellscript", SCRIPT),
        _ => ("application/octet-stream", BINARY),
    }
}

/// Counts and hashes a request body as it streams in.
#[derive(Debug, Default)]
pub struct Body {
    pub expected: u64,
    pub seen: u64,
    hasher: Sha256,
}

impl Body {
    pub fn new(expected: u64) -> Body {
        Body {
            expected,
            ..Default::default()
        }
    }

    /// Takes what belongs to the body from `data`; returns how many bytes were taken.
    pub fn take(&mut self, data: &[u8]) -> usize {
        let want = (self.expected - self.seen).min(data.len() as u64) as usize;
        self.hasher.update(&data[..want]);
        self.seen += want as u64;
        want
    }

    pub fn done(&self) -> bool {
        self.seen >= self.expected
    }

    pub fn sha256(self) -> Option<String> {
        (self.seen > 0).then(|| hex::encode(self.hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_is_parsed_with_its_facts() {
        let raw = b"POST /gate.php?id=1 HTTP/1.1\r\nHost: c2.example.com\r\nUser-Agent: curl/7.88\r\nContent-Length: 5\r\n\r\nhello";
        let Parsed::Head(r, len) = parse(raw) else {
            panic!("complete head")
        };
        assert_eq!(len, raw.len() - 5);
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/gate.php?id=1");
        assert_eq!(r.host.as_deref(), Some("c2.example.com"));
        assert_eq!(r.user_agent.as_deref(), Some("curl/7.88"));
        assert_eq!(r.body_len, 5);
        assert!(r.keep_alive);
        assert_eq!(
            r.url("198.18.0.1", 80),
            "http://c2.example.com/gate.php?id=1"
        );
        let mut body = Body::new(r.body_len);
        assert_eq!(body.take(b"hello, more"), 5);
        assert!(body.done());
        assert_eq!(
            body.sha256().as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
    }

    #[test]
    fn partial_invalid_and_oversized_heads() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a"), Parsed::Partial);
        assert_eq!(parse(b"\x16\x03\x01\x00"), Parsed::Invalid);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse(&big), Parsed::Invalid);
        assert!(looks_like_http(b"GET /x"));
        assert!(looks_like_http(b"post /x"));
        assert!(!looks_like_http(b"GETX"));
    }

    #[test]
    fn the_body_type_follows_the_extension() {
        let get = |path: &str| {
            respond(&Request {
                method: "GET".into(),
                path: path.into(),
                ..Default::default()
            })
        };
        assert_eq!(get("/").content_type, "text/html");
        assert_eq!(
            get("/a/payload.EXE").content_type,
            "application/octet-stream"
        );
        assert_eq!(get("/i.png?x=1").content_type, "image/gif");
        assert_eq!(get("/s.sh").body, SCRIPT);
        let r = get("/x.txt");
        let head = String::from_utf8(r.head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 3\r\n"), "{head}");
        assert!(head.contains("Connection: close\r\n"), "{head}");
        let bulk = get("/.aegis/bulk/1000000");
        assert_eq!((bulk.zeros, bulk.body.len()), (1_000_000, 0));
        assert_eq!(get("/.aegis/bulk/999999999999").zeros, MAX_BULK);
        let head = respond(&Request {
            method: "HEAD".into(),
            path: "/x.txt".into(),
            ..Default::default()
        });
        assert!(head.body.is_empty());
    }
}
