#!/usr/bin/env python3
"""Benchmark of issue 5, one run; prints a Markdown section for docs/benchmarks.md.

For each backend (native, docker with runc, docker with runsc): a trivial analysis end to end
(`aegis analyze` of `#!/bin/sh` + `exit 0`, wall time of the whole command) and the
per-analysis start overhead (that wall time minus the sample's own run time from the report).
Yardstick: a raw container of the same guest image running /bin/true through the Engine API
(create, start, wait, remove), which is what `docker run --rm` does, under runc and runsc.
"""
import http.client, json, os, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.environ.get("AEGIS_BIN", os.path.join(ROOT, "target/release/aegis"))
DATA = os.environ.get("AEGIS_DATA_DIR", "/var/tmp/aegis-test-data")
SOCK = os.environ.get("AEGIS_DOCKER_SOCKET", "/var/run/docker.sock")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(SOCK)


def api(method, path, body=None):
    c = Unix("localhost", timeout=120)
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read()
    if r.status >= 300:
        sys.exit(f"{method} {path}: {r.status} {text[:200]!r}")
    return json.loads(text) if text else None


def raw_run(image, runtime):
    """docker run --rm --network none <image> /bin/true, through the API."""
    t0 = time.monotonic()
    c = api("POST", "/containers/create", {
        "Image": image, "Cmd": ["/bin/true"], "NetworkDisabled": True,
        "Labels": {"io.aegisai.sandbox": "1"},
        "HostConfig": {"NetworkMode": "none", "Runtime": runtime},
    })
    api("POST", f"/containers/{c['Id']}/start")
    api("POST", f"/containers/{c['Id']}/wait")
    api("DELETE", f"/containers/{c['Id']}?force=1")
    return time.monotonic() - t0


def analyze(sample, args):
    t0 = time.monotonic()
    out = subprocess.run([AEGIS, "--data-dir", DATA, "analyze", sample, "--json", *args],
                         capture_output=True, check=True)
    wall = time.monotonic() - t0
    report = json.loads(out.stdout)
    assert report["execution"]["end_reason"] == "exited", report["execution"]
    return wall, report["execution"]["duration_s"]


def main():
    work = tempfile.mkdtemp(prefix="aegis-bench-")
    sample = os.path.join(work, "trivial.sh")
    with open(sample, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    image = json.load(open(os.path.join(DATA, "images/linux/image.json")))
    base = "aegis-guest/linux:" + image["digest"].split(":")[1][:12]
    backends = [("native", []), ("docker (runc)", ["--backend", "docker"]),
                ("docker (runsc)", ["--backend", "docker", "--runtime", "runsc"])]
    for _, args in backends:
        analyze(sample, args)  # imports the image, warms caches
    rows = []
    for name, args in backends:
        walls, overheads = [], []
        for _ in range(RUNS):
            wall, ran = analyze(sample, args)
            walls.append(wall)
            overheads.append(wall - ran)
        rows.append((name, statistics.median(walls), statistics.median(overheads)))
    yard = {}
    for runtime in ["runc", "runsc"]:
        raw_run(base, runtime)
        yard[runtime] = statistics.median(raw_run(base, runtime) for _ in range(RUNS))

    print(f"One run of `python3 bench/backends.py`, {RUNS} repetitions each, medians; "
          f"binary `{os.path.relpath(AEGIS, ROOT)}`.\n")
    print("| run | trivial analysis end to end, s | start overhead per analysis, s | "
          "ratio to raw `docker run` (same runtime) |")
    print("|---|---|---|---|")
    for name, wall, over in rows:
        rt = "runsc" if "runsc" in name else "runc"
        ratio = f"{wall / yard[rt]:.2f}" if name != "native" else f"{wall / yard['runc']:.2f} (vs runc)"
        print(f"| {name} | {wall:.3f} | {over:.3f} | {ratio} |")
    for rt in ["runc", "runsc"]:
        print(f"| raw `docker run --rm --network none` of the guest image, /bin/true, {rt} "
              f"| {yard[rt]:.3f} | — | 1.00 |")


if __name__ == "__main__":
    main()
