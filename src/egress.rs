//! Where the product may send anything: loopback only.
//!
//! Safety policy: aegis never sends a packet to a non-loopback address. The only outbound
//! connections it makes are webhook callbacks, and a callback URL must be `http://` on
//! `127.0.0.0/8`, `[::1]` or `localhost` (always 127.0.0.1, never looked up). This module holds
//! the check, below both the configuration and the service that use it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Longest accepted callback URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// The policy, as every refusal states it.
pub const POLICY: &str =
    "callbacks go only to http:// URLs on loopback hosts (127.0.0.0/8, [::1] or localhost)";

/// A callback URL refused by the policy.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("callback URL is not allowed: {reason}; {POLICY}")]
pub struct NotAllowed {
    pub reason: String,
}

/// A callback URL that passed the loopback policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackUrl {
    text: String,
    addr: SocketAddr,
    host_header: String,
    path: String,
}

impl CallbackUrl {
    /// Checks `text` against the policy.
    pub fn parse(text: &str) -> Result<CallbackUrl, NotAllowed> {
        let refuse = |reason: String| NotAllowed { reason };
        if text.len() > MAX_URL_BYTES {
            return Err(refuse(format!("longer than {MAX_URL_BYTES} bytes")));
        }
        let url = url::Url::parse(text).map_err(|e| refuse(format!("not a URL ({e})")))?;
        if url.scheme() != "http" {
            return Err(refuse(format!("scheme `{}` (only http)", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("it carries credentials".into()));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => IpAddr::V6(ip),
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
            Some(host) => return Err(refuse(format!("host `{host}` is not loopback"))),
            None => return Err(refuse("it has no host".into())),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let host_header = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(CallbackUrl {
            text: url.to_string(),
            addr: SocketAddr::new(ip, port),
            host_header,
            path,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Where the connection goes: always a loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `Host` header of a request to it.
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// Path and query of a request to it.
    pub fn path(&self) -> &str {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_accepted_with_their_connect_address() {
        let table = [
            (
                "http://127.0.0.1:9000/hook",
                "127.0.0.1:9000",
                "127.0.0.1:9000",
                "/hook",
            ),
            (
                "http://localhost/cb?x=1",
                "127.0.0.1:80",
                "localhost",
                "/cb?x=1",
            ),
            ("http://LOCALHOST:81", "127.0.0.1:81", "localhost:81", "/"),
            ("http://[::1]:8080/a", "[::1]:8080", "[::1]:8080", "/a"),
            (
                "http://127.255.0.9:1/",
                "127.255.0.9:1",
                "127.255.0.9:1",
                "/",
            ),
            ("http://0x7f.1:5/", "127.0.0.1:5", "127.0.0.1:5", "/"),
        ];
        for (text, addr, host, path) in table {
            let url = CallbackUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(url.addr().to_string(), addr, "{text}");
            assert_eq!(url.host_header(), host, "{text}");
            assert_eq!(url.path(), path, "{text}");
        }
    }

    #[test]
    fn everything_that_could_leave_the_host_is_refused() {
        let table = [
            (
                "http://example.com/hook",
                "host `example.com` is not loopback",
            ),
            ("http://10.0.0.1/", "host `10.0.0.1` is not loopback"),
            ("http://0.0.0.0/", "host `0.0.0.0` is not loopback"),
            ("http://[::ffff:127.0.0.1]/", "is not loopback"),
            ("http://[::]/", "is not loopback"),
            ("http://127.0.0.1@evil.example/", "it carries credentials"),
            (
                "http://evil.example#@127.0.0.1/",
                "host `evil.example` is not loopback",
            ),
            ("http://user:pw@127.0.0.1/", "it carries credentials"),
            ("http://localhost.evil.example/", "is not loopback"),
            ("http://localhost./", "is not loopback"),
            ("https://127.0.0.1/", "scheme `https` (only http)"),
            ("file:///etc/passwd", "scheme `file`"),
            ("ftp://127.0.0.1/", "scheme `ftp`"),
            ("127.0.0.1:80", "not a URL"),
            ("", "not a URL"),
            ("http://", "not a URL"),
        ];
        for (text, reason) in table {
            let err = CallbackUrl::parse(text).expect_err(text).to_string();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(err.ends_with(POLICY), "{text}: {err}");
        }
        let long = format!("http://127.0.0.1/{}", "a".repeat(MAX_URL_BYTES));
        assert!(CallbackUrl::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }
}
