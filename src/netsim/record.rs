//! What the simulated internet saw, written as `network.json` in the run directory for the
//! report builder.

use serde::{Deserialize, Serialize};

/// Records kept per kind; past this they are counted, not kept.
pub const MAX_RECORDS: usize = 4096;
/// Bytes of a flow's first payload kept.
pub const FIRST_BYTES: usize = 256;

/// Everything seen during one analysis.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Traffic {
    pub dns: Vec<DnsRecord>,
    pub flows: Vec<Flow>,
    pub http: Vec<HttpRecord>,
    pub tls: Vec<TlsRecord>,
    pub pcap: PcapStats,
    /// Records left out past [`MAX_RECORDS`].
    pub dropped: u64,
    /// Problems of the simulated internet itself (the report lists them as incomplete).
    pub errors: Vec<String>,
}

/// One DNS question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsRecord {
    /// Monotonic ns.
    pub t: u64,
    pub flow: usize,
    pub query: String,
    pub qtype: String,
    pub answers: Vec<String>,
    pub rcode: String,
}

/// One TCP connection or one UDP flow (source and destination address and port).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    /// Monotonic ns of its first packet.
    pub t: u64,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub src_ip: String,
    pub src_port: u16,
    pub dst_ip: String,
    pub dst_port: u16,
    /// Payload bytes the guest sent.
    pub bytes_out: u64,
    /// Payload bytes the simulated internet sent back.
    pub bytes_in: u64,
    /// UDP datagrams the guest sent (0 for TCP).
    pub datagrams: u64,
    /// The first payload bytes the guest sent.
    pub first_bytes: Vec<u8>,
    /// `http`, `tls`, `dns`, `smtp`, `ftp`, `irc`, or none.
    pub service: Option<String>,
    /// Commands of a line protocol (SMTP, FTP, IRC), in order.
    pub commands: Vec<String>,
}

/// One HTTP request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpRecord {
    pub t: u64,
    pub flow: usize,
    pub method: String,
    pub url: String,
    pub host: Option<String>,
    pub path: String,
    pub user_agent: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body_size: u64,
    pub body_sha256: Option<String>,
    pub response_status: u16,
    pub response_content_type: String,
}

/// One TLS ClientHello.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsRecord {
    pub t: u64,
    pub flow: usize,
    pub sni: Option<String>,
    pub ja3: String,
    pub ja3_string: String,
}

/// What the capture holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PcapStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets left out of the file once it reached its size cap.
    pub packets_not_written: u64,
}

impl Traffic {
    /// Keeps a record unless its list is full.
    pub fn keep<T>(list: &mut Vec<T>, dropped: &mut u64, item: T) -> Option<usize> {
        if list.len() >= MAX_RECORDS {
            *dropped += 1;
            return None;
        }
        list.push(item);
        Some(list.len() - 1)
    }
}
