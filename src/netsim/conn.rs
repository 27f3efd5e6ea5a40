//! One TCP connection's conversation: what the guest sent decides which service answers
//! (HTTP, TLS, or the line protocol of the destination port), and every fact is recorded.

use super::http::{self, Parsed};
use super::lines::{LineProtocol, Session};
use super::record::{Flow, HttpRecord, TlsRecord, Traffic, FIRST_BYTES};
use super::tls;

/// The TLS alert `handshake_failure`: the simulated internet holds no certificate.
const TLS_ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
/// Largest ClientHello awaited before the stream is treated as unknown.
const MAX_HELLO: usize = 16 << 10;
/// Bytes needed before a stream that is neither HTTP nor TLS is called unknown.
const DETECT_BYTES: usize = 8;

#[derive(Debug)]
enum App {
    Detect,
    /// Waiting for a request head, or reading the body of `record`.
    Http {
        body: Option<(http::Body, Option<usize>, http::Response)>,
    },
    Tls,
    Lines(Session),
    /// Unknown: received bytes are counted and dropped.
    Raw,
}

/// The conversation of one connection.
#[derive(Debug)]
pub struct Conn {
    pub flow: Option<usize>,
    dst_ip: String,
    dst_port: u16,
    app: App,
    input: Vec<u8>,
    /// Bytes to send, from `sent` on; then `zeros` zero bytes.
    output: Vec<u8>,
    sent: usize,
    zeros: u64,
    close_when_sent: bool,
}

impl Conn {
    /// A connection just established; a line protocol's server speaks first.
    pub fn open(flow: Option<usize>, dst_ip: String, dst_port: u16, traffic: &mut Traffic) -> Conn {
        let mut c = Conn {
            flow,
            dst_ip,
            dst_port,
            app: App::Detect,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            zeros: 0,
            close_when_sent: false,
        };
        if let Some(p) = LineProtocol::for_port(dst_port) {
            c.app = App::Lines(Session::new(p));
            c.output.extend_from_slice(p.banner());
            c.set_service(traffic, p.name());
        }
        c
    }

    fn flow_mut<'a>(&self, traffic: &'a mut Traffic) -> Option<&'a mut Flow> {
        self.flow.and_then(|i| traffic.flows.get_mut(i))
    }

    fn set_service(&self, traffic: &mut Traffic, name: &str) {
        if let Some(f) = self.flow_mut(traffic) {
            f.service = Some(name.to_string());
        }
    }

    /// Bytes the guest sent.
    pub fn received(&mut self, data: &[u8], t: u64, traffic: &mut Traffic) {
        if let Some(f) = self.flow_mut(traffic) {
            f.bytes_out += data.len() as u64;
            let room = FIRST_BYTES.saturating_sub(f.first_bytes.len());
            f.first_bytes
                .extend_from_slice(&data[..room.min(data.len())]);
        }
        if matches!(self.app, App::Raw) {
            return;
        }
        self.input.extend_from_slice(data);
        self.advance(t, traffic);
    }

    fn advance(&mut self, t: u64, traffic: &mut Traffic) {
        if matches!(self.app, App::Detect) {
            self.detect(traffic);
        }
        match &mut self.app {
            App::Http { .. } => self.http(t, traffic),
            App::Tls => self.tls(t, traffic),
            App::Lines(session) => {
                let (reply, commands) = session.feed(&self.input);
                self.input.clear();
                self.close_when_sent |= session.closing;
                self.output.extend_from_slice(&reply);
                if let Some(f) = self.flow.and_then(|i| traffic.flows.get_mut(i)) {
                    let room = 256usize.saturating_sub(f.commands.len());
                    f.commands.extend(commands.into_iter().take(room));
                }
            }
            App::Detect | App::Raw => {}
        }
    }

    fn detect(&mut self, traffic: &mut Traffic) {
        if tls::looks_like_tls(&self.input) {
            self.app = App::Tls;
            self.set_service(traffic, "tls");
        } else if http::looks_like_http(&self.input) {
            self.app = App::Http { body: None };
            self.set_service(traffic, "http");
        } else if self.input.len() >= DETECT_BYTES || self.input.contains(&b'\n') {
            self.app = App::Raw;
            self.input = Vec::new();
        }
    }

    fn tls(&mut self, t: u64, traffic: &mut Traffic) {
        if let Some(hello) = tls::client_hello(&self.input) {
            let record = TlsRecord {
                t,
                flow: self.flow.unwrap_or(usize::MAX),
                sni: hello.sni,
                ja3: hello.ja3,
                ja3_string: hello.ja3_string,
            };
            Traffic::keep(&mut traffic.tls, &mut traffic.dropped, record);
            self.output.extend_from_slice(TLS_ALERT);
            self.close_when_sent = true;
            self.app = App::Raw;
            self.input = Vec::new();
        } else if self.input.len() > MAX_HELLO {
            self.app = App::Raw;
            self.input = Vec::new();
        }
    }

    fn http(&mut self, t: u64, traffic: &mut Traffic) {
        loop {
            let App::Http { body } = &mut self.app else {
                return;
            };
            if let Some((b, _, _)) = body {
                let used = b.take(&self.input);
                self.input.drain(..used);
                if !b.done() {
                    return;
                }
                let (b, record, response) = body.take().expect("a body in progress");
                if let Some(r) = record.and_then(|i| traffic.http.get_mut(i)) {
                    r.body_size = b.seen;
                    r.body_sha256 = b.sha256();
                }
                self.send_response(response);
                continue;
            }
            match http::parse(&self.input) {
                Parsed::Partial => return,
                Parsed::Invalid => {
                    self.output
                        .extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    self.close_when_sent = true;
                    self.app = App::Raw;
                    self.input = Vec::new();
                    return;
                }
                Parsed::Head(req, len) => {
                    self.input.drain(..len);
                    self.start_request(req, t, traffic);
                }
            }
        }
    }

    fn start_request(&mut self, req: http::Request, t: u64, traffic: &mut Traffic) {
        let response = http::respond(&req);
        let record = HttpRecord {
            t,
            flow: self.flow.unwrap_or(usize::MAX),
            method: req.method.clone(),
            url: req.url(&self.dst_ip, self.dst_port),
            host: req.host.clone(),
            path: req.path.clone(),
            user_agent: req.user_agent.clone(),
            headers: req.headers.clone(),
            body_size: 0,
            body_sha256: None,
            response_status: response.status,
            response_content_type: response.content_type.to_string(),
        };
        let index = Traffic::keep(&mut traffic.http, &mut traffic.dropped, record);
        if req.chunked {
            // A chunked body is not followed: answer now and count the rest as unknown.
            self.send_response(response);
            self.close_when_sent = true;
            self.app = App::Raw;
            self.input = Vec::new();
            return;
        }
        if !req.keep_alive {
            self.close_when_sent = true;
        }
        self.app = App::Http {
            body: Some((http::Body::new(req.body_len), index, response)),
        };
    }

    fn send_response(&mut self, response: http::Response) {
        self.output.extend_from_slice(&response.head);
        self.output.extend_from_slice(response.body);
        self.zeros += response.zeros;
    }

    /// What is waiting to be sent: a slice of bytes, or else a count of zero bytes.
    pub fn pending(&self) -> (&[u8], u64) {
        (&self.output[self.sent..], self.zeros)
    }

    /// `n` bytes of [`Conn::pending`] were handed to the socket.
    pub fn consumed(&mut self, n: usize, traffic: &mut Traffic) {
        let from_output = n.min(self.output.len() - self.sent);
        self.sent += from_output;
        self.zeros -= (n - from_output) as u64;
        if self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
        }
        if let Some(f) = self.flow_mut(traffic) {
            f.bytes_in += n as u64;
        }
    }

    /// Everything was sent and the service is done with the connection.
    pub fn finished(&self) -> bool {
        self.close_when_sent && self.output.is_empty() && self.zeros == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic_with_flow() -> Traffic {
        let mut t = Traffic::default();
        t.flows.push(Flow {
            t: 0,
            protocol: "tcp".into(),
            src_ip: "172.31.18.44".into(),
            src_port: 40000,
            dst_ip: "192.0.2.10".into(),
            dst_port: 80,
            bytes_out: 0,
            bytes_in: 0,
            datagrams: 0,
            first_bytes: Vec::new(),
            service: None,
            commands: Vec::new(),
        });
        t
    }

    fn drain(c: &mut Conn, t: &mut Traffic) -> Vec<u8> {
        let (bytes, zeros) = c.pending();
        let mut out = bytes.to_vec();
        out.extend(std::iter::repeat_n(0u8, zeros as usize));
        c.consumed(out.len(), t);
        out
    }

    #[test]
    fn an_http_request_split_across_segments_is_answered_once_its_body_is_in() {
        let mut t = traffic_with_flow();
        let mut c = Conn::open(Some(0), "192.0.2.10".into(), 80, &mut t);
        c.received(
            b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Len",
            1,
            &mut t,
        );
        c.received(b"gth: 4\r\nConnection: close\r\n\r\nab", 2, &mut t);
        assert!(c.pending().0.is_empty(), "no answer before the body is in");
        c.received(b"cd", 3, &mut t);
        let reply = String::from_utf8(drain(&mut c, &mut t)).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(c.finished());
        let h = &t.http[0];
        assert_eq!(
            (h.method.as_str(), h.url.as_str()),
            ("POST", "http://a.test/up")
        );
        assert_eq!(h.body_size, 4);
        assert_eq!(h.t, 2);
        let f = &t.flows[0];
        assert_eq!(f.service.as_deref(), Some("http"));
        assert_eq!(f.bytes_out, 77);
        assert_eq!(f.bytes_in, reply.len() as u64);
        assert!(f.first_bytes.starts_with(b"POST /up"));
    }

    #[test]
    fn keep_alive_serves_two_requests_and_bulk_is_zeros() {
        let mut t = traffic_with_flow();
        let mut c = Conn::open(Some(0), "192.0.2.10".into(), 80, &mut t);
        c.received(
            b"GET /a.txt HTTP/1.1\r\n\r\nGET /.aegis/bulk/10 HTTP/1.1\r\n\r\n",
            1,
            &mut t,
        );
        let out = drain(&mut c, &mut t);
        assert_eq!(t.http.len(), 2);
        assert!(out.ends_with(&[0u8; 10]));
        assert!(!c.finished(), "keep-alive");
    }

    #[test]
    fn unknown_bytes_are_counted_and_smtp_speaks_first() {
        let mut t = traffic_with_flow();
        let mut c = Conn::open(Some(0), "192.0.2.10".into(), 4444, &mut t);
        c.received(b"\x01\x02beacon-data", 1, &mut t);
        assert!(c.pending().0.is_empty());
        assert_eq!(t.flows[0].service, None);
        assert_eq!(t.flows[0].bytes_out, 13);
        let mut t = traffic_with_flow();
        let mut s = Conn::open(Some(0), "192.0.2.10".into(), 25, &mut t);
        assert!(s.pending().0.starts_with(b"220 "));
        s.received(b"HELO x\r\nQUIT\r\n", 1, &mut t);
        assert_eq!(t.flows[0].commands, vec!["HELO x", "QUIT"]);
        drain(&mut s, &mut t);
        assert!(s.finished());
    }
}
