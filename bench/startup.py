#!/usr/bin/env python3
"""Start-up time to /ready, idle RSS and login latency of a release build.

Usage: bench/startup.py [path/to/flagbase]   (default: target/release/flagbase)
Runs everything on loopback in a temporary directory; prints a Markdown table.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/flagbase")
RUNS = 10
LOGINS = 200


def request(url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def start(workdir):
    proc = subprocess.Popen(
        [BIN, "--log-level", "warn", "start", "--host", "127.0.0.1", "--port", "0"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    base, token = None, None
    for line in proc.stdout:
        line = line.strip()
        if line.startswith("http:"):
            base = line.split()[-1]
        if line.startswith("setup token:"):
            token = line.split()[-1]
        if line.startswith("Ready."):
            break
    return proc, base, token


def until_ready(base):
    while True:
        try:
            if request(base + "/ready")[0] == 200:
                return
        except OSError:
            pass


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    startup_ms, rss = [], []
    for i in range(RUNS):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            proc, base, _ = start(d)
            until_ready(base)
            startup_ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.5)  # idle: let start-up work (dummy hash) settle
            rss.append(rss_kib(proc.pid))
            proc.terminate()
            proc.wait()

    with tempfile.TemporaryDirectory() as d:
        proc, base, setup = start(d)
        password = "correct horse battery"
        status, _ = request(base + "/setup", {"token": setup, "email": "root@example.com", "password": password})
        assert status == 201, status
        lat = []
        for _ in range(LOGINS):
            t0 = time.perf_counter()
            status, _ = request(base + "/auth/login", {"email": "root@example.com", "password": password})
            lat.append((time.perf_counter() - t0) * 1000)
            assert status == 200, status
        proc.terminate()
        proc.wait()

    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]
    print(f"| metric | p50 | p99 / max | runs |")
    print(f"|---|---|---|---|")
    print(f"| start-up to /ready (ms, fresh database) | {statistics.median(startup_ms):.1f} | {max(startup_ms):.1f} | {RUNS} |")
    print(f"| idle RSS after start (MiB) | {statistics.median(rss) / 1024:.1f} | {max(rss) / 1024:.1f} | {RUNS} |")
    print(f"| login latency, sequential (ms) | {q(lat, 0.5):.1f} | {q(lat, 0.99):.1f} | {LOGINS} |")


if __name__ == "__main__":
    main()
