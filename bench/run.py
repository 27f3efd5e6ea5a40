#!/usr/bin/env python3
"""Benchmarks of issue 2, measured in one run; prints a Markdown section for docs/benchmarks.md.

- Monitoring overhead on a fork- and syscall-heavy workload (bench/workload.sh): untraced on the
  host, inside `aegis analyze` (the sample's own run time from the report), under `strace -f`.
- Sandbox start-to-exec latency: from starting the command to the sample's first instruction
  (bench/stamp.c prints CLOCK_MONOTONIC), `aegis analyze` against `bwrap --unshare-all`.
"""
import json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.environ.get("AEGIS_BIN", os.path.join(ROOT, "target/release/aegis"))
DATA = os.environ.get("AEGIS_DATA_DIR", "/var/tmp/aegis-bench-data")
RUNS = int(os.environ.get("BENCH_RUNS", "7"))


def aegis(*args):
    out = subprocess.run([AEGIS, "--data-dir", DATA, *args], capture_output=True, check=True)
    return out.stdout


def wall(cmd, **kw):
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.monotonic() - t0


def main():
    work = tempfile.mkdtemp(prefix="aegis-bench-")
    stamp = os.path.join(work, "stamp")
    subprocess.run(["gcc", "-O2", "-static", "-o", stamp, os.path.join(ROOT, "bench/stamp.c")], check=True)
    workload = os.path.join(ROOT, "bench/workload.sh")
    aegis("analyze", stamp, "--json")  # builds the image if needed, warms caches

    untraced, monitored, monitored_wall, straced = [], [], [], []
    for _ in range(RUNS):
        untraced.append(wall(["sh", workload], cwd=work))
        t0 = time.monotonic()
        report = json.loads(aegis("analyze", workload, "--json", "--timeout", "300", "--cpus", "2"))
        monitored_wall.append(time.monotonic() - t0)
        assert report["execution"]["end_reason"] == "exited", report["execution"]
        monitored.append(report["execution"]["duration_s"])
        straced.append(wall(["strace", "-f", "-qq", "-o", "/dev/null", "sh", workload], cwd=work))

    aegis_start, bwrap_start = [], []
    for _ in range(RUNS * 3):
        t0 = time.monotonic_ns()
        report = json.loads(aegis("analyze", stamp, "--json"))
        aegis_start.append(int(report["output"]["stdout"]["text"]) - t0)
        t0 = time.monotonic_ns()
        out = subprocess.run(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                              "--proc", "/proc", "--dev", "/dev", stamp],
                             capture_output=True, check=True).stdout
        bwrap_start.append(int(out) - t0)

    med = statistics.median
    u, m, mw, s = med(untraced), med(monitored), med(monitored_wall), med(straced)
    a, b = med(aegis_start) / 1e6, med(bwrap_start) / 1e6
    print("## Monitoring overhead and sandbox start (issue 2)\n")
    print(f"One run of `python3 bench/run.py` on this machine ({os.cpu_count()} cores), "
          f"{RUNS} repetitions each, medians. Release build, cgroup "
          f"{'v2' if os.path.exists('/sys/fs/cgroup/cgroup.controllers') else 'v1'}.\n")
    print("Workload `bench/workload.sh`: 400 execs of `/bin/true`, 40 files written with "
          "`head`, a copy of `/usr/share/perl`, a `tar` of the tree, cleanup.\n")
    print("| run | seconds | ratio to untraced |")
    print("|---|---|---|")
    print(f"| untraced (host) | {u:.3f} | 1.00 |")
    print(f"| monitored by `aegis analyze` (sample's run time) | {m:.3f} | {m / u:.2f} |")
    print(f"| `aegis analyze` whole command (set-up, run, collection, report) | {mw:.3f} | {mw / u:.2f} |")
    print(f"| `strace -f` | {s:.3f} | {s / u:.2f} |")
    print("\nTarget: monitored at most 1.3x untraced.\n")
    print("| start to the sample's first instruction | ms | ratio to bwrap |")
    print("|---|---|---|")
    print(f"| `bwrap --unshare-all` | {b:.1f} | 1.00 |")
    print(f"| `aegis analyze` | {a:.1f} | {a / b:.2f} |")
    print("\nTarget: within 2x of bwrap.")


if __name__ == "__main__":
    sys.exit(main())
