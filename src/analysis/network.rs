//! The network section: the syscall view's connections merged with the simulated internet's
//! traffic, one record per connection.
//!
//! Attribution rule: a TCP connection (or UDP flow) of the traffic belongs to the system-call
//! record of the same protocol, destination address and port whose time is closest to the
//! traffic's first packet, within [`MATCH_WINDOW_S`], each record taken at most once. The
//! `connect`/`sendto` record carries the process; the traffic adds bytes, source port and
//! service. Traffic with no such record is listed alone (`seen_in: traffic`) and carries no
//! process. DNS, HTTP and TLS records take the process of their connection.

use std::net::IpAddr;

use crate::netsim::record::{Flow, Traffic};
use crate::netsim::{DnsMode, NetworkMode, NetworkSpec, PCAP_NAME};
use crate::report::{text, Connection, DnsQuery, HttpRequest, Incomplete, Network, TlsHello};

/// Largest distance in seconds between a system call and the first packet it caused.
pub const MATCH_WINDOW_S: f64 = 2.0;

const NONE_NOTE: &str = "network mode `none`: the sandbox had loopback only, so no DNS, HTTP or \
TLS was possible and no traffic was captured; connections below are what the system calls \
attempted";

fn secs(ns: u64, start: u64) -> f64 {
    let s = ns.saturating_sub(start) as f64 / 1e9;
    (s * 1e6).round() / 1e6
}

/// Addresses compare in canonical form (`::ffff:192.0.2.1` is `192.0.2.1`).
fn same_ip(a: Option<&str>, b: &str) -> bool {
    let canon = |s: &str| s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    matches!((a.and_then(canon), canon(b)), (Some(x), Some(y)) if x == y)
}

/// Fills `network` for the mode; `traffic` is `network.json` when the run had one.
pub fn fill(
    network: &mut Network,
    spec: &NetworkSpec,
    traffic: Option<Traffic>,
    start_ns: u64,
    incomplete: &mut Vec<Incomplete>,
) {
    network.mode = spec.mode.as_str().into();
    if spec.mode == NetworkMode::None {
        network.note = Some(NONE_NOTE.into());
        return;
    }
    network.dns_mode = Some(
        match spec.dns {
            DnsMode::Sinkhole => "sinkhole",
            DnsMode::Nxdomain => "nxdomain",
        }
        .into(),
    );
    let Some(traffic) = traffic else {
        incomplete.push(Incomplete {
            section: "network".into(),
            reason: "the simulated internet left no records".into(),
            dropped: None,
        });
        network.dns = Some(Vec::new());
        network.http = Some(Vec::new());
        network.tls = Some(Vec::new());
        return;
    };
    let owners = merge_flows(&mut network.connections, &traffic.flows, start_ns);
    let conn_of = |flow: usize| owners.get(flow).copied().flatten();
    let process_of =
        |flow: usize, conns: &[Connection]| conn_of(flow).and_then(|c| conns[c].process_id);
    let flow_dst = |flow: usize| {
        traffic
            .flows
            .get(flow)
            .map(|f| (Some(f.dst_ip.clone()), Some(f.dst_port)))
            .unwrap_or((None, None))
    };
    network.dns = Some(
        traffic
            .dns
            .iter()
            .map(|d| DnsQuery {
                query: d.query.clone(),
                qtype: d.qtype.clone(),
                answers: d.answers.clone(),
                rcode: d.rcode.clone(),
                process_id: process_of(d.flow, &network.connections),
                time: secs(d.t, start_ns),
            })
            .collect(),
    );
    network.http = Some(
        traffic
            .http
            .iter()
            .map(|h| {
                let (dst_ip, dst_port) = flow_dst(h.flow);
                HttpRequest {
                    method: h.method.clone(),
                    url: h.url.clone(),
                    host: h.host.clone(),
                    path: h.path.clone(),
                    user_agent: h.user_agent.clone(),
                    headers: h.headers.clone(),
                    body_size: h.body_size,
                    body_sha256: h.body_sha256.clone(),
                    response_status: h.response_status,
                    response_content_type: h.response_content_type.clone(),
                    dst_ip,
                    dst_port,
                    process_id: process_of(h.flow, &network.connections),
                    time: secs(h.t, start_ns),
                }
            })
            .collect(),
    );
    network.tls = Some(
        traffic
            .tls
            .iter()
            .map(|t| {
                let (dst_ip, dst_port) = flow_dst(t.flow);
                TlsHello {
                    sni: t.sni.clone(),
                    ja3: t.ja3.clone(),
                    ja3_string: t.ja3_string.clone(),
                    dst_ip,
                    dst_port,
                    process_id: process_of(t.flow, &network.connections),
                    time: secs(t.t, start_ns),
                }
            })
            .collect(),
    );
    network.pcap = Some(PCAP_NAME.into());
    network.pcap_packets = Some(traffic.pcap.packets);
    network.pcap_packets_not_written = Some(traffic.pcap.packets_not_written);
    note_gaps(&traffic, incomplete);
}

fn note_gaps(traffic: &Traffic, incomplete: &mut Vec<Incomplete>) {
    if traffic.pcap.packets_not_written > 0 {
        incomplete.push(Incomplete {
            section: "network".into(),
            reason: "the packet capture reached its size cap (network.pcap_max_bytes)".into(),
            dropped: Some(traffic.pcap.packets_not_written),
        });
    }
    if traffic.dropped > 0 {
        incomplete.push(Incomplete {
            section: "network".into(),
            reason: "the sample produced more network records than the report keeps".into(),
            dropped: Some(traffic.dropped),
        });
    }
    for e in &traffic.errors {
        incomplete.push(Incomplete {
            section: "network".into(),
            reason: e.clone(),
            dropped: None,
        });
    }
}

/// Merges the flows into `conns`; returns, per flow, the index of its connection record.
fn merge_flows(conns: &mut Vec<Connection>, flows: &[Flow], start_ns: u64) -> Vec<Option<usize>> {
    let mut taken = vec![false; conns.len()];
    let mut owners = Vec::with_capacity(flows.len());
    for flow in flows {
        let t = secs(flow.t, start_ns);
        let best = conns
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                !taken.get(*i).copied().unwrap_or(true)
                    && c.protocol == flow.protocol
                    && c.dst_port == Some(flow.dst_port)
                    && same_ip(c.dst_ip.as_deref(), &flow.dst_ip)
                    && (c.time - t).abs() <= MATCH_WINDOW_S
            })
            .min_by(|a, b| (a.1.time - t).abs().total_cmp(&(b.1.time - t).abs()))
            .map(|(i, _)| i);
        let index = match best {
            Some(i) => {
                taken[i] = true;
                conns[i].seen_in = "syscall+traffic".into();
                i
            }
            None => {
                conns.push(from_traffic(flow, t));
                conns.len() - 1
            }
        };
        let c = &mut conns[index];
        c.src_port = Some(flow.src_port);
        c.bytes_out = Some(flow.bytes_out);
        c.bytes_in = Some(flow.bytes_in);
        c.datagrams = (flow.protocol == "udp").then_some(flow.datagrams);
        c.first_bytes = (!flow.first_bytes.is_empty()).then(|| text::escape(&flow.first_bytes));
        c.service = flow.service.clone();
        c.commands = flow.commands.clone();
        owners.push(Some(index));
    }
    conns.sort_by(|a, b| a.time.total_cmp(&b.time));
    // Sorting moved the records: find each flow's record again by its source port and time.
    owners
        .iter()
        .zip(flows)
        .map(|(_, f)| {
            conns.iter().position(|c| {
                c.src_port == Some(f.src_port)
                    && c.protocol == f.protocol
                    && c.dst_port == Some(f.dst_port)
                    && same_ip(c.dst_ip.as_deref(), &f.dst_ip)
            })
        })
        .collect()
}

fn from_traffic(flow: &Flow, t: f64) -> Connection {
    Connection {
        protocol: flow.protocol.clone(),
        operation: "traffic".into(),
        dst_ip: Some(flow.dst_ip.clone()),
        dst_port: Some(flow.dst_port),
        dst_path: None,
        process_id: None,
        time: t,
        outcome: if flow.protocol == "tcp" {
            "established".into()
        } else {
            "sent".into()
        },
        src_port: None,
        bytes_out: None,
        bytes_in: None,
        datagrams: None,
        first_bytes: None,
        service: None,
        commands: Vec::new(),
        seen_in: "traffic".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netsim::record::{DnsRecord, HttpRecord};

    fn syscall(protocol: &str, ip: &str, port: u16, pid: u32, time: f64) -> Connection {
        Connection {
            protocol: protocol.into(),
            operation: "connect".into(),
            dst_ip: Some(ip.into()),
            dst_port: Some(port),
            dst_path: None,
            process_id: Some(pid),
            time,
            outcome: "connected".into(),
            src_port: None,
            bytes_out: None,
            bytes_in: None,
            datagrams: None,
            first_bytes: None,
            service: None,
            commands: Vec::new(),
            seen_in: "syscall".into(),
        }
    }

    fn flow(protocol: &str, ip: &str, port: u16, src_port: u16, t_ns: u64) -> Flow {
        Flow {
            t: t_ns,
            protocol: protocol.into(),
            src_ip: "172.31.18.44".into(),
            src_port,
            dst_ip: ip.into(),
            dst_port: port,
            bytes_out: 10,
            bytes_in: 20,
            datagrams: 0,
            first_bytes: b"GET /".to_vec(),
            service: Some("http".into()),
            commands: Vec::new(),
        }
    }

    const START: u64 = 1_000_000_000;

    #[test]
    fn a_connection_seen_twice_is_one_record_with_its_process() {
        let mut net = Network {
            connections: vec![
                syscall("tcp", "192.0.2.10", 80, 2, 0.5),
                syscall("tcp", "192.0.2.10", 80, 3, 1.5),
                syscall("tcp", "::ffff:198.51.100.7", 443, 2, 0.7),
                syscall("unix", "", 0, 2, 0.1),
            ],
            ..Default::default()
        };
        let traffic = Traffic {
            flows: vec![
                flow("tcp", "192.0.2.10", 80, 40001, START + 1_501_000_000),
                flow("tcp", "192.0.2.10", 80, 40000, START + 501_000_000),
                flow("tcp", "198.51.100.7", 443, 40002, START + 701_000_000),
                flow("tcp", "203.0.113.5", 8080, 40003, START + 9_000_000_000),
            ],
            http: vec![HttpRecord {
                t: START + 1_600_000_000,
                flow: 0,
                method: "GET".into(),
                url: "http://a.test/".into(),
                host: Some("a.test".into()),
                path: "/".into(),
                user_agent: None,
                headers: vec![("Host".into(), "a.test".into())],
                body_size: 0,
                body_sha256: None,
                response_status: 200,
                response_content_type: "text/html".into(),
            }],
            dns: vec![DnsRecord {
                t: START,
                flow: 99,
                query: "a.test".into(),
                qtype: "A".into(),
                answers: vec!["198.18.0.1".into()],
                rcode: "NOERROR".into(),
            }],
            ..Default::default()
        };
        let spec = NetworkSpec {
            mode: NetworkMode::Simulated,
            ..Default::default()
        };
        let mut incomplete = Vec::new();
        fill(&mut net, &spec, Some(traffic), START, &mut incomplete);
        let c = &net.connections;
        assert_eq!(c.len(), 5, "{c:#?}");
        let tcp: Vec<_> = c.iter().filter(|c| c.protocol == "tcp").collect();
        assert_eq!(
            tcp.iter()
                .map(|c| (c.src_port, c.process_id, c.seen_in.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (Some(40000), Some(2), "syscall+traffic"),
                (Some(40002), Some(2), "syscall+traffic"),
                (Some(40001), Some(3), "syscall+traffic"),
                (Some(40003), None, "traffic"),
            ]
        );
        assert_eq!(tcp[0].bytes_out, Some(10));
        assert_eq!(tcp[0].first_bytes.as_deref(), Some("GET /"));
        let http = net.http.as_ref().unwrap();
        assert_eq!(
            http[0].process_id,
            Some(3),
            "the second connection's process"
        );
        assert_eq!(http[0].dst_port, Some(80));
        assert_eq!(net.dns.as_ref().unwrap()[0].process_id, None);
        assert_eq!(net.pcap.as_deref(), Some("network.pcap"));
        assert!(incomplete.is_empty());
    }

    #[test]
    fn mode_none_says_so_instead_of_empty_lists() {
        let mut net = Network::default();
        fill(
            &mut net,
            &NetworkSpec::default_none(),
            None,
            START,
            &mut Vec::new(),
        );
        assert_eq!(net.mode, "none");
        assert!(net.note.as_deref().unwrap().contains("loopback only"));
        assert!(net.dns.is_none() && net.http.is_none() && net.pcap.is_none());
    }
}
