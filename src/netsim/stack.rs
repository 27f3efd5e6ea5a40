//! The simulated internet's user-space TCP/IP stack (smoltcp) behind the guest's TUN device.
//!
//! It answers for every address: UDP is handled per datagram (DNS answered, the rest
//! recorded), a TCP SYN to an address and port nobody listens on gets a listening socket
//! made for it just before smoltcp sees the SYN, so every connection is accepted.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};

use super::conn::Conn;
use super::dns::{self, DnsMode};
use super::pcap::Capture;
use super::record::{DnsRecord, Flow, Traffic, FIRST_BYTES};
use super::tun::{GATEWAY_V4, GATEWAY_V6, GUEST_V4_PREFIX, GUEST_V6_PREFIX, MTU};

/// TCP connections open at once; a SYN past this is refused (smoltcp answers RST).
const MAX_CONNECTIONS: usize = 512;
/// Flows remembered (to merge packets into one record); past this, new flows are answered but
/// not recorded, so a flood of source ports cannot grow the supervisor's memory without end.
const MAX_FLOWS: usize = 16384;
const TCP_RX_BUFFER: usize = 64 << 10;
const TCP_TX_BUFFER: usize = 256 << 10;
/// Zero bytes handed to a socket at a time for a bulk response.
static ZEROS: [u8; 16 << 10] = [0; 16 << 10];

/// A connection's addresses: guest side first.
type Tuple = (IpAddr, u16, IpAddr, u16);

/// Packets between the TUN and smoltcp.
#[derive(Default)]
struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let r = f(&mut packet);
        self.0.push(packet);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((Rx(packet), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// The stack and everything it records.
pub struct Stack {
    iface: Interface,
    device: Queue,
    sockets: SocketSet<'static>,
    conns: HashMap<SocketHandle, Conn>,
    live: HashMap<Tuple, SocketHandle>,
    tcp_flows: HashMap<Tuple, Option<usize>>,
    udp_flows: HashMap<Tuple, Option<usize>>,
    pub traffic: Traffic,
    capture: Option<Capture>,
    dns: DnsMode,
    /// Monotonic ns, the clock of the monitor's events.
    clock: fn() -> u64,
    epoch: std::time::Instant,
}

impl Stack {
    pub fn new(capture: Capture, dns: DnsMode, clock: fn() -> u64) -> Stack {
        let mut device = Queue::default();
        let epoch = std::time::Instant::now();
        let mut iface =
            Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(GATEWAY_V4), GUEST_V4_PREFIX));
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(GATEWAY_V6), GUEST_V6_PREFIX));
        });
        iface.set_any_ip(true);
        Stack {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            conns: HashMap::new(),
            live: HashMap::new(),
            tcp_flows: HashMap::new(),
            udp_flows: HashMap::new(),
            traffic: Traffic::default(),
            capture: Some(capture),
            dns,
            clock,
            epoch,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// How long the stack may sleep before its timers need it.
    pub fn delay_ms(&mut self) -> u64 {
        let now = self.now();
        self.iface
            .poll_delay(now, &self.sockets)
            .map_or(u64::MAX, |d| d.total_millis())
    }

    /// Closes the capture file; what it holds.
    pub fn capture_finish(&mut self) -> super::record::PcapStats {
        self.capture.take().map(Capture::finish).unwrap_or_default()
    }

    /// A packet the guest sent.
    pub fn ingest(&mut self, packet: Vec<u8>) {
        if let Some(c) = &mut self.capture {
            c.packet(&packet);
        }
        match classify(&packet) {
            Some(Kind::Udp(tuple, payload)) => self.udp(tuple, payload),
            Some(Kind::Syn(tuple)) => {
                self.expect_connection(tuple);
                self.device.rx.push_back(packet);
            }
            _ => self.device.rx.push_back(packet),
        }
    }

    /// Runs the stack and the services; returns the packets to send to the guest.
    pub fn step(&mut self) -> Vec<Vec<u8>> {
        let now = self.now();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.adopt_new_connections();
        self.serve();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.reap();
        let out = std::mem::take(&mut self.device.tx);
        if let Some(c) = &mut self.capture {
            for p in &out {
                c.packet(p);
            }
        }
        out
    }

    fn flow(&mut self, protocol: &str, tuple: Tuple) -> Option<usize> {
        let flow = Flow {
            t: (self.clock)(),
            protocol: protocol.into(),
            src_ip: tuple.0.to_string(),
            src_port: tuple.1,
            dst_ip: tuple.2.to_string(),
            dst_port: tuple.3,
            bytes_out: 0,
            bytes_in: 0,
            datagrams: 0,
            first_bytes: Vec::new(),
            service: None,
            commands: Vec::new(),
        };
        Traffic::keep(&mut self.traffic.flows, &mut self.traffic.dropped, flow)
    }

    fn udp(&mut self, tuple: Tuple, payload: &[u8]) {
        let flow = match self.udp_flows.get(&tuple) {
            Some(f) => *f,
            None if self.udp_flows.len() >= MAX_FLOWS => {
                self.traffic.dropped += 1;
                None
            }
            None => {
                let f = self.flow("udp", tuple);
                self.udp_flows.insert(tuple, f);
                f
            }
        };
        if let Some(f) = flow.and_then(|i| self.traffic.flows.get_mut(i)) {
            f.datagrams += 1;
            f.bytes_out += payload.len() as u64;
            let room = FIRST_BYTES.saturating_sub(f.first_bytes.len());
            f.first_bytes
                .extend_from_slice(&payload[..room.min(payload.len())]);
        }
        if tuple.3 != 53 {
            return;
        }
        let Some((reply, asked)) = dns::answer(payload, self.dns) else {
            return;
        };
        let t = (self.clock)();
        for a in asked {
            let record = DnsRecord {
                t,
                flow: flow.unwrap_or(usize::MAX),
                query: a.query,
                qtype: a.qtype,
                answers: a.answers,
                rcode: a.rcode,
            };
            Traffic::keep(&mut self.traffic.dns, &mut self.traffic.dropped, record);
        }
        if let Some(f) = flow.and_then(|i| self.traffic.flows.get_mut(i)) {
            f.service = Some("dns".into());
            f.bytes_in += reply.len() as u64;
        }
        if let Some(packet) = udp_reply(tuple, &reply) {
            self.device.tx.push(packet);
        }
    }

    /// A SYN: unless its connection exists, a socket listens for it.
    fn expect_connection(&mut self, tuple: Tuple) {
        if self.live.contains_key(&tuple) || self.conns.len() >= MAX_CONNECTIONS {
            return;
        }
        if self.tcp_flows.len() >= MAX_FLOWS {
            // Forget flows whose connection is gone; the records stay in `traffic`.
            let live: std::collections::HashSet<Tuple> = self.live.keys().copied().collect();
            self.tcp_flows.retain(|t, _| live.contains(t));
        }
        let flow = self.flow("tcp", tuple);
        self.tcp_flows.insert(tuple, flow);
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_TX_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        // A peer that stops answering (a half-open scan, a killed process) frees its slot.
        socket.set_timeout(Some(smoltcp::time::Duration::from_secs(60)));
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::from(tuple.2)),
            port: tuple.3,
        };
        if socket.listen(endpoint).is_ok() {
            self.sockets.add(socket);
        }
    }

    /// Sockets that took a SYN become connections; listeners left without one go.
    fn adopt_new_connections(&mut self) {
        let mut unused = Vec::new();
        let mut adopted = Vec::new();
        for (handle, socket) in self.sockets.iter() {
            let smoltcp::socket::Socket::Tcp(s) = socket;
            if self.conns.contains_key(&handle) {
                continue;
            }
            match (s.state(), s.remote_endpoint(), s.local_endpoint()) {
                (tcp::State::Listen, _, _) => unused.push(handle),
                (_, Some(remote), Some(local)) => adopted.push((handle, tuple_of(remote, local))),
                _ => unused.push(handle),
            }
        }
        for h in unused {
            self.sockets.remove(h);
        }
        for (handle, tuple) in adopted {
            let flow = self.tcp_flows.get(&tuple).copied().flatten();
            let conn = Conn::open(flow, tuple.2.to_string(), tuple.3, &mut self.traffic);
            self.live.insert(tuple, handle);
            self.conns.insert(handle, conn);
        }
    }

    /// Moves bytes between the sockets and the services.
    fn serve(&mut self) {
        for (handle, conn) in self.conns.iter_mut() {
            let socket = self.sockets.get_mut::<tcp::Socket>(*handle);
            let t = (self.clock)();
            while socket.can_recv() {
                let traffic = &mut self.traffic;
                let got = socket.recv(|data| {
                    conn.received(data, t, traffic);
                    (data.len(), data.len())
                });
                if !matches!(got, Ok(n) if n > 0) {
                    break;
                }
            }
            while socket.can_send() {
                let (bytes, zeros) = conn.pending();
                let chunk: &[u8] = if !bytes.is_empty() {
                    bytes
                } else if zeros > 0 {
                    &ZEROS[..ZEROS.len().min(zeros as usize)]
                } else {
                    break;
                };
                match socket.send_slice(chunk) {
                    Ok(n) if n > 0 => conn.consumed(n, &mut self.traffic),
                    _ => break,
                }
            }
            let peer_done = !socket.may_recv() && socket.state() != tcp::State::SynReceived;
            if conn.finished()
                || (peer_done && conn.pending().0.is_empty() && conn.pending().1 == 0)
            {
                socket.close();
            }
        }
    }

    /// Closed connections give their socket back.
    fn reap(&mut self) {
        let closed: Vec<SocketHandle> = self
            .conns
            .keys()
            .copied()
            .filter(|h| {
                let s = self.sockets.get::<tcp::Socket>(*h);
                matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait)
            })
            .collect();
        for h in closed {
            self.conns.remove(&h);
            self.live.retain(|_, v| *v != h);
            self.sockets.remove(h);
        }
    }
}

/// What the stack needs to know about a packet before smoltcp sees it.
enum Kind<'a> {
    Udp(Tuple, &'a [u8]),
    Syn(Tuple),
}

fn classify(packet: &[u8]) -> Option<Kind<'_>> {
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let (src, dst) = match sliced.net? {
        NetSlice::Ipv4(v4) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
        ),
        NetSlice::Ipv6(v6) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
        ),
        _ => return None,
    };
    match sliced.transport? {
        TransportSlice::Udp(u) => Some(Kind::Udp(
            (src, u.source_port(), dst, u.destination_port()),
            u.payload(),
        )),
        TransportSlice::Tcp(t) if t.syn() && !t.ack() => {
            Some(Kind::Syn((src, t.source_port(), dst, t.destination_port())))
        }
        _ => None,
    }
}

fn tuple_of(remote: IpEndpoint, local: IpEndpoint) -> Tuple {
    (
        IpAddr::from(remote.addr),
        remote.port,
        IpAddr::from(local.addr),
        local.port,
    )
}

/// A UDP datagram back to the guest, from the address and port it wrote to.
fn udp_reply(tuple: Tuple, payload: &[u8]) -> Option<Vec<u8>> {
    let (guest, guest_port, server, server_port) = tuple;
    let builder = match (server, guest) {
        (IpAddr::V4(s), IpAddr::V4(g)) => PacketBuilder::ipv4(s.octets(), g.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(g)) => PacketBuilder::ipv6(s.octets(), g.octets(), 64),
        _ => return None,
    }
    .udp(server_port, guest_port);
    let mut packet = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut packet, payload).ok()?;
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: [u8; 4] = [172, 31, 18, 44];

    fn stack(dir: &std::path::Path) -> Stack {
        let capture = Capture::create(&dir.join("t.pcap"), 1 << 20).unwrap();
        Stack::new(capture, DnsMode::Sinkhole, || 7)
    }

    fn syn(dst: [u8; 4], port: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv4(GUEST, dst, 64)
            .tcp(40000, port, 1000, 64240)
            .syn();
        let mut p = Vec::new();
        b.write(&mut p, &[]).unwrap();
        p
    }

    #[test]
    fn a_syn_to_any_address_and_port_is_answered_with_syn_ack() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = stack(dir.path());
        for (dst, port) in [([192, 0, 2, 10], 4444), ([203, 0, 113, 5], 8080)] {
            s.ingest(syn(dst, port));
            let out = s.step();
            let reply = out
                .iter()
                .filter_map(|p| SlicedPacket::from_ip(p).ok())
                .find_map(|p| match (p.net, p.transport) {
                    (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) => Some((
                        ip.header().source_addr().octets(),
                        t.source_port(),
                        t.syn() && t.ack(),
                    )),
                    _ => None,
                })
                .expect("a TCP answer");
            assert_eq!(reply, (dst, port, true));
        }
        assert_eq!(s.traffic.flows.len(), 2);
        assert_eq!(s.traffic.flows[1].dst_ip, "203.0.113.5");
        assert_eq!(s.traffic.flows[1].t, 7);
    }

    #[test]
    fn a_dns_query_is_answered_from_the_address_it_was_sent_to() {
        use hickory_proto::op::{Message, Query};
        use hickory_proto::rr::{Name, RecordType};
        let dir = tempfile::tempdir().unwrap();
        let mut s = stack(dir.path());
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii("a.test.").unwrap(),
            RecordType::A,
        ));
        let q = m.to_vec().unwrap();
        let mut p = Vec::new();
        PacketBuilder::ipv4(GUEST, [172, 31, 0, 2], 64)
            .udp(5555, 53)
            .write(&mut p, &q)
            .unwrap();
        s.ingest(p);
        let out = s.step();
        assert_eq!(out.len(), 1);
        let reply = SlicedPacket::from_ip(&out[0]).unwrap();
        let Some(NetSlice::Ipv4(ip)) = reply.net else {
            panic!("IPv4")
        };
        assert_eq!(ip.header().source_addr().octets(), [172, 31, 0, 2]);
        let Some(TransportSlice::Udp(u)) = reply.transport else {
            panic!("UDP")
        };
        assert_eq!((u.source_port(), u.destination_port()), (53, 5555));
        let answer = Message::from_vec(u.payload()).unwrap();
        assert_eq!(answer.answers[0].data.to_string(), "198.18.0.1");
        assert_eq!(s.traffic.dns[0].query, "a.test");
        assert_eq!(s.traffic.flows[0].service.as_deref(), Some("dns"));
        let stats = s.capture_finish();
        assert_eq!(stats.packets, 2, "the query and the answer are captured");
    }

    #[test]
    fn garbage_is_captured_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = stack(dir.path());
        s.ingest(vec![0x45, 0, 0]);
        s.ingest(Vec::new());
        assert!(s.step().is_empty());
        assert!(s.traffic.flows.is_empty());
        assert_eq!(s.capture_finish().packets, 2);
    }
}
