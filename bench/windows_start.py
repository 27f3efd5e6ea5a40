#!/usr/bin/env python3
"""Time from submission to a Windows sample's first instruction, cold and warm.

The sample is bench/stamp_win.c built as a PE32+ console program: its first action prints the
host's CLOCK_MONOTONIC. Submission is the moment `aegis analyze` is started. Cold: every page
of the windows image evicted from the page cache first (posix_fadvise DONTNEED on each of its
files, so nothing else on the machine is evicted); warm: the runs after. Run as root from the
repository's top directory after `cargo build --release`.
"""
import json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.path.join(ROOT, "target/release/aegis")
DATA = os.environ.get("AEGIS_DATA_DIR", "/var/tmp/aegis-test-data")
WARM_RUNS = int(os.environ.get("WARM_RUNS", "7"))
EXTRA = os.environ.get("EXTRA_ARGS", "").split()  # e.g. EXTRA_ARGS="--cpus 1"


def analyze(sample):
    t0 = time.monotonic_ns()
    out = subprocess.run([AEGIS, "--data-dir", DATA, "analyze", sample, "--json", "--timeout", "60", *EXTRA],
                         capture_output=True, check=True).stdout
    report = json.loads(out)
    stamp = int(report["output"]["stdout"]["text"].strip())
    return (stamp - t0) / 1e6, report


def evict(rootfs):
    files = 0
    for dirpath, _, names in os.walk(rootfs):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                files += 1
            finally:
                os.close(fd)
    return files


def main():
    work = tempfile.mkdtemp(prefix="aegis-bench-win-")
    stamp = os.path.join(work, "stamp.exe")
    subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-o", stamp,
                    os.path.join(ROOT, "bench/stamp_win.c")], check=True)
    analyze(stamp)  # builds the image when missing
    rootfs = os.path.join(DATA, "images/windows/rootfs")
    evicted = evict(rootfs)
    cold, report = analyze(stamp)
    warm, boot = [], []
    for _ in range(WARM_RUNS):
        time.sleep(0.3)
        ms, report = analyze(stamp)
        warm.append(ms)
        launcher = report["processes"][0]["id"]
        sample = [p for p in report["processes"] if p["parent_id"] == launcher][-1]
        boot.append(sample["started_at"] * 1e3)
    print(f"files evicted for the cold run: {evicted}; extra arguments: {EXTRA or 'none'}")
    print(f"| run | ms to the sample's first instruction |")
    print(f"|---|---|")
    print(f"| cold (image evicted from the page cache) | {cold:.0f} |")
    print(f"| warm, median of {WARM_RUNS} | {statistics.median(warm):.0f} |")
    print(f"| warm, min - max | {min(warm):.0f} - {max(warm):.0f} |")
    print(f"| warm: of which before the sample's loader starts (wineserver, session boot), median | {statistics.median(boot):.0f} |")
    print(f"whole analysis (warm, last run): {report['execution']['duration_s']} s in the sandbox")


if __name__ == "__main__":
    sys.exit(main())
