#!/usr/bin/env python3
"""Benchmarks of issue 3 (the REST service), measured in one run; prints a Markdown section for
docs/benchmarks.md.

- End-to-end overhead of a trivial analysis: POST /analyze -> GET /results shows `completed`,
  minus the sample's own run time (report.execution.duration_s). Sequential, idle queue.
- Submission latency and sustained rate with wrk on loopback (POST /analyze, JSON, 100-byte
  script): p50/p99 and requests/s. Every accepted submission is a real queued analysis.
- Throughput of trivial analyses end to end at the configured concurrency.
- Read latency of GET /results/{id} with wrk, for reference.

Needs root, `wrk` (apt-get install wrk) and a release build (cargo build --release).
Environment: AEGIS_BIN, AEGIS_TEST_DATA_DIR (where the shared guest image lives),
BENCH_E2E_RUNS (default 50), BENCH_SECONDS (default 10), BENCH_CONCURRENCY (default 2).
"""
import base64, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
AEGIS = os.environ.get("AEGIS_BIN", os.path.join(TARGET, "release/aegis"))
IMAGES = os.path.join(os.environ.get("AEGIS_TEST_DATA_DIR", "/var/tmp/aegis-test-data"), "images")
E2E_RUNS = int(os.environ.get("BENCH_E2E_RUNS", "50"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "2"))
TRIVIAL = b"#!/bin/sh\nexit 0\n"


def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


def submit(base, sample, timeout=10):
    body = json.dumps({"file_data": base64.b64encode(sample).decode(), "file_name": "bench.sh",
                       "analysis_timeout": timeout}).encode()
    return call(base, "POST", "/analyze", body)["analysis_id"]


def ts(text):
    # 2026-01-02T03:04:05.678Z -> seconds
    t = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    return time.mktime(t) + float("0." + text[20:23])


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def start_server(work):
    data = os.path.join(work, "data")
    os.makedirs(data)
    if os.path.isdir(IMAGES):
        os.symlink(IMAGES, os.path.join(data, "images"))
    else:
        subprocess.run([AEGIS, "--data-dir", data, "image", "build", "linux"], check=True)
    config = os.path.join(work, "config.json")
    with open(config, "w") as f:
        json.dump({"service": {"shutdown_grace": 1}}, f)
    proc = subprocess.Popen([AEGIS, "--data-dir", data, "--config", config, "serve", "--listen",
                             "127.0.0.1:0", "--concurrency", str(CONCURRENCY)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    base = re.search(r"http://[0-9.:]+", line).group(0)
    return proc, base


def e2e(base):
    client, server, overhead_client, overhead_server, runs = [], [], [], [], []
    handoff, engine = [], []
    submit(base, TRIVIAL)  # warm-up
    time.sleep(0.5)
    for _ in range(E2E_RUNS):
        t0 = time.monotonic()
        aid = submit(base, TRIVIAL)
        while True:
            r = call(base, "GET", f"/results/{aid}")
            if r["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.001)
        took = time.monotonic() - t0
        assert r["status"] == "completed", r
        run = r["report"]["execution"]["duration_s"]
        srv = ts(r["ended_at"]) - ts(r["submitted_at"])
        client.append(took)
        server.append(srv)
        runs.append(run)
        overhead_client.append(took - run)
        overhead_server.append(srv - run)
        handoff.append(ts(r["started_at"]) - ts(r["submitted_at"]))
        engine.append(ts(r["ended_at"]) - ts(r["started_at"]))
    return client, server, runs, overhead_client, overhead_server, handoff, engine


def wrk(base, path, lua=None, connections=16):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{SECONDS}s", "--latency"]
    if lua:
        cmd += ["-s", lua]
    out = subprocess.run(cmd + [base + path], capture_output=True, text=True, check=True).stdout
    def lat(p):
        m = re.search(rf"^\s+{p}%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50": lat(50), "p99": lat(99), "rate": rate,
            "errors": int(non2xx.group(1)) if non2xx else 0, "raw": out}


def throughput(base, n=200):
    t0 = time.monotonic()
    ids = [submit(base, TRIVIAL) for _ in range(n)]
    for aid in ids:
        while call(base, "GET", f"/results/{aid}")["status"] not in ("completed", "failed"):
            time.sleep(0.01)
    return n / (time.monotonic() - t0)


def main():
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    work = tempfile.mkdtemp(prefix="aegis-api-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)  # the guest's uids must be able to traverse the data directory
    proc, base = start_server(work)
    try:
        client, server, runs, oc, os_, handoff, engine = e2e(base)
        analyses_per_s = throughput(base)
        lua = os.path.join(work, "submit.lua")
        body = json.dumps({"file_data": base64.b64encode(TRIVIAL).decode(),
                           "file_name": "bench.sh", "analysis_timeout": 5})
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = {json.dumps(body)}\n")
        some_id = submit(base, TRIVIAL)
        time.sleep(1)
        get = wrk(base, f"/results/{some_id}")
        health = wrk(base, "/health")
        post = wrk(base, "/analyze", lua)  # last: it leaves thousands of analyses queued
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    ms = lambda s: f"{s * 1000:.1f}"
    cpus = os.cpu_count()
    print(f"""## REST service (`aegis serve`)

Measured with `bench/api.py` on this machine ({cpus} CPUs), release build, the service started
with `--concurrency {CONCURRENCY}`, load generator and service on the same loopback, both sharing
the {cpus} CPUs. Database: SQLite WAL with `synchronous=FULL` (each accepted submission is on disk
before the 202, the sample file fsync'd too).

### End-to-end overhead of a trivial analysis

`#!/bin/sh\\nexit 0`, submitted {E2E_RUNS} times one after the other on an idle queue; client time
from the start of `POST /analyze` until `GET /results/{{id}}` (polled every 1 ms) shows
`completed`. The sample's run time is the report's `execution.duration_s`, which the engine
measures from releasing the sandbox's init to the end of the run, so it also holds the
in-sandbox set-up (pivot_root, seccomp, ptrace attach) and teardown; `exit 0` itself takes
about a millisecond.

| | p50 | p95 | max |
|---|---:|---:|---:|
| submit → completed, client (ms) | {ms(percentile(client, 50))} | {ms(percentile(client, 95))} | {ms(max(client))} |
| `execution.duration_s` (ms) | {ms(percentile(runs, 50))} | {ms(percentile(runs, 95))} | {ms(max(runs))} |
| **overhead beyond `duration_s`, client (ms)** | **{ms(percentile(oc, 50))}** | **{ms(percentile(oc, 95))}** | **{ms(max(oc))}** |
| same, server clock `ended_at − submitted_at − duration_s` (ms) | {ms(percentile(os_, 50))} | {ms(percentile(os_, 95))} | {ms(max(os_))} |
| queue hand-off `started_at − submitted_at` (ms) | {ms(percentile(handoff, 50))} | {ms(percentile(handoff, 95))} | {ms(max(handoff))} |
| engine `ended_at − started_at` (ms) | {ms(percentile(engine, 50))} | {ms(percentile(engine, 95))} | {ms(max(engine))} |

The budget is 150 ms beyond the sample's own run time. The overhead beyond `duration_s` peaks
at {ms(max(oc))} ms; even counting all of `duration_s` as overhead, submit → completed peaks at
{ms(max(client))} ms. Server timestamps have millisecond resolution.

### Submission latency and sustained rate (wrk)

`wrk -t2 -c16 -d{SECONDS}s --latency`. The reads run on an idle service; then each request of
the `POST` run is a JSON submission of a 17-byte script, every one accepted (202), stored and
queued while the {CONCURRENCY} workers keep running analyses on the same CPUs.

| endpoint | p50 (ms) | p99 (ms) | requests/s | non-2xx |
|---|---:|---:|---:|---:|
| `POST /analyze` | {post['p50']:.2f} | {post['p99']:.2f} | {post['rate']:.0f} | {post['errors']} |
| `GET /results/{{id}}` (with report) | {get['p50']:.2f} | {get['p99']:.2f} | {get['rate']:.0f} | {get['errors']} |
| `GET /health` | {health['p50']:.2f} | {health['p99']:.2f} | {health['rate']:.0f} | {health['errors']} |

### Analyses run to completion

200 trivial analyses submitted at once, `--concurrency {CONCURRENCY}`: {analyses_per_s:.1f} analyses/s
from the first submission to the last `completed`.
""")


if __name__ == "__main__":
    main()
