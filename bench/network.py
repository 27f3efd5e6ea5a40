#!/usr/bin/env python3
"""Benchmark of issue 6 (the simulated internet), measured in one run; prints a Markdown
section for docs/benchmarks.md.

Runs bench/net-workload.py as the sample of `aegis analyze`, inside a network namespace of
its own with no route out (`unshare --net`), RUNS times, and takes the medians.
"""
import json, os, statistics, subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.environ.get("AEGIS_BIN", os.path.join(ROOT, "target/release/aegis"))
DATA = os.environ.get("AEGIS_DATA_DIR", "/var/tmp/aegis-bench-data")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def one_run():
    out = subprocess.run(
        ["unshare", "--net", AEGIS, "--data-dir", DATA, "analyze",
         os.path.join(ROOT, "bench/net-workload.py"), "--json", "--timeout", "120"],
        capture_output=True, check=True)
    report = json.loads(out.stdout)
    stdout = report["output"]["stdout"]["text"].strip().splitlines()
    if not stdout:
        raise SystemExit("workload printed nothing: " + report["output"]["stderr"]["text"])
    return json.loads(stdout[-1]), report


def main():
    runs = [one_run() for _ in range(RUNS)]
    m = lambda key: statistics.median(r[0][key] for r in runs)
    mib_s = statistics.median(r[0]["bulk_bytes"] / r[0]["bulk_seconds"] / (1 << 20) for r in runs)
    n = runs[0][0]["n"]
    report = runs[-1][1]
    print(f"One run of `python3 bench/network.py`: {RUNS} analyses, each timing {n} operations "
          "of each kind inside the sandbox (medians of the per-analysis medians). Release build.\n")
    print("| measure | loopback in the guest | through the simulated internet | added |")
    print("|---|---|---|---|")
    lo, sim = m("tcp_connect_loopback_ms"), m("tcp_connect_simulated_ms")
    print(f"| TCP connect (ms) | {lo:.3f} | {sim:.3f} | {sim - lo:.3f} |")
    lo, sim = m("udp_round_trip_loopback_ms"), m("dns_query_simulated_ms")
    print(f"| UDP round trip: echo on loopback / DNS query answered (ms) | {lo:.3f} | {sim:.3f} "
          f"| {sim - lo:.3f} |")
    size = runs[0][0]["bulk_bytes"] >> 20
    print(f"\nBulk HTTP download of {size} MiB with curl through the simulated internet: "
          f"**{mib_s:.1f} MiB/s** (every packet also written to `network.pcap`, "
          f"{report['network']['pcap_packets']} packets in the last run).")


if __name__ == "__main__":
    main()
