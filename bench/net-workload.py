#!/usr/bin/env python3
"""Runs inside the sandbox (bench/network.py submits it): latencies of TCP connections and DNS
queries through the simulated internet against the same over the guest's own loopback, and
the throughput of a bulk HTTP download. Prints one JSON line."""
import json, socket, statistics, struct, subprocess, sys, time

N = 300


def connect_times(addr, port):
    times = []
    for _ in range(N):
        t = time.perf_counter()
        s = socket.create_connection((addr, port), timeout=5)
        times.append(time.perf_counter() - t)
        s.close()
    return times


SERVER = r"""
import socket, sys, threading
t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(512)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
print(t.getsockname()[1], u.getsockname()[1], flush=True)
def echo():
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(data, peer)
threading.Thread(target=echo, daemon=True).start()
while True:
    t.accept()[0].close()
"""


def loopback_servers():
    """A responder on the guest's own loopback, in a process of its own (as the simulated
    internet is outside the sample's process): TCP accept-and-close and a UDP echo."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    tcp, udp = map(int, proc.stdout.readline().split())
    return proc, tcp, udp


def query(name, qid):
    head = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return head + qname + struct.pack(">HH", 1, 1)


def round_trips(addr, port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.connect((addr, port))
    times = []
    for i in range(N):
        packet = query(f"host{i}.example.com", i)
        t = time.perf_counter()
        u.send(packet)
        u.recv(2048)
        times.append(time.perf_counter() - t)
    return times


def ms(times):
    return round(statistics.median(times) * 1e3, 3)


server, tcp_port, udp_port = loopback_servers()
lo_tcp = connect_times("127.0.0.1", tcp_port)
sim_tcp = connect_times("192.0.2.50", 80)
lo_udp = round_trips("127.0.0.1", udp_port)
sim_dns = round_trips("172.31.0.2", 53)
size = 48 << 20
out = subprocess.run(
    ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
     f"http://198.18.0.1/.aegis/bulk/{size}"],
    capture_output=True, text=True, check=True).stdout.split()
server.kill()
print(json.dumps({
    "n": N,
    "tcp_connect_loopback_ms": ms(lo_tcp),
    "tcp_connect_simulated_ms": ms(sim_tcp),
    "udp_round_trip_loopback_ms": ms(lo_udp),
    "dns_query_simulated_ms": ms(sim_dns),
    "bulk_bytes": int(out[0]),
    "bulk_seconds": float(out[1]),
}))
