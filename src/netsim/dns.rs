//! DNS: every question is answered from the policy of the analysis, never forwarded.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use serde::{Deserialize, Serialize};

/// How names resolve in the simulated internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsMode {
    /// Every name resolves (A and AAAA) to the sinkhole.
    #[default]
    Sinkhole,
    /// Every name is answered NXDOMAIN.
    Nxdomain,
}

impl DnsMode {
    pub fn parse(text: &str) -> Option<DnsMode> {
        match text {
            "sinkhole" => Some(DnsMode::Sinkhole),
            "nxdomain" => Some(DnsMode::Nxdomain),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DnsMode::Sinkhole => "sinkhole",
            DnsMode::Nxdomain => "nxdomain",
        }
    }
}

/// Where every resolved name points: an address of the simulated internet (RFC 2544's
/// benchmarking range and the IPv6 documentation prefix, neither routed on the internet).
pub const SINKHOLE_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SINKHOLE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xae, 0, 0, 0, 0, 1);

/// Seconds the answers may be cached.
const TTL: u32 = 300;

/// One question and what it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    pub query: String,
    /// `A`, `AAAA`, `MX`, ...
    pub qtype: String,
    pub answers: Vec<String>,
    /// `NOERROR`, `NXDOMAIN`, `FORMERR`, ...
    pub rcode: String,
}

/// Answers a DNS message: the reply's bytes and what was asked. `None` when the bytes are
/// not a DNS query at all (then nothing is sent back).
pub fn answer(query: &[u8], mode: DnsMode) -> Option<(Vec<u8>, Vec<Answered>)> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let mut asked = Vec::new();
    let code = if request.metadata.op_code != OpCode::Query {
        ResponseCode::NotImp
    } else if mode == DnsMode::Nxdomain {
        ResponseCode::NXDomain
    } else {
        ResponseCode::NoError
    };
    reply.metadata.response_code = code;
    for q in &request.queries {
        reply.add_query(q.clone());
        let mut answers = Vec::new();
        if code == ResponseCode::NoError {
            let rdata = match q.query_type() {
                RecordType::A => Some(RData::A(A(SINKHOLE_V4))),
                RecordType::AAAA => Some(RData::AAAA(AAAA(SINKHOLE_V6))),
                _ => None,
            };
            if let Some(rdata) = rdata {
                answers.push(rdata.to_string());
                reply.add_answer(Record::from_rdata(q.name().clone(), TTL, rdata));
            }
        }
        asked.push(Answered {
            query: q.name().to_string().trim_end_matches('.').to_string(),
            qtype: q.query_type().to_string(),
            answers,
            rcode: rcode_name(code),
        });
    }
    let bytes = reply.to_vec().ok()?;
    Some((bytes, asked))
}

/// The response code as DNS tools print it.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        other => other.to_string().to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    #[test]
    fn every_name_resolves_to_the_sinkhole() {
        let (bytes, asked) = answer(
            &query("evil.example.com.", RecordType::A),
            DnsMode::Sinkhole,
        )
        .expect("answered");
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].data.to_string(), "198.18.0.1");
        assert_eq!(
            asked,
            vec![Answered {
                query: "evil.example.com".into(),
                qtype: "A".into(),
                answers: vec!["198.18.0.1".into()],
                rcode: "NOERROR".into(),
            }]
        );
        let (_, asked) = answer(&query("x.test.", RecordType::AAAA), DnsMode::Sinkhole).unwrap();
        assert_eq!(asked[0].answers, vec!["2001:db8:ae::1".to_string()]);
        let (_, asked) = answer(&query("x.test.", RecordType::MX), DnsMode::Sinkhole).unwrap();
        assert!(asked[0].answers.is_empty());
    }

    #[test]
    fn nxdomain_mode_answers_nothing() {
        let (bytes, asked) =
            answer(&query("c2.example.net.", RecordType::A), DnsMode::Nxdomain).unwrap();
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(reply.answers.is_empty());
        assert!(asked[0].answers.is_empty());
    }

    #[test]
    fn garbage_and_responses_get_no_answer() {
        assert!(answer(b"\x00\x01garbage", DnsMode::Sinkhole).is_none());
        let mut m = Message::response(7, OpCode::Query);
        m.metadata.response_code = ResponseCode::NoError;
        assert!(answer(&m.to_vec().unwrap(), DnsMode::Sinkhole).is_none());
    }
}
