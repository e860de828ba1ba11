#!/usr/bin/env python3
"""What one small job costs the broker, counted: messages in and out per job, per
connection, and the messages each stream stored.

Starts nats-server (with its monitoring port), a gateway and a worker of one jetmill
build, runs `jetmill bench` against them, and reads nats-server's /varz, /connz and
/jsz before and after the load phase. Counts, not times: they do not drift with the
machine's speed, so one run says where a job's broker work goes.

  cargo build --release -p jetmill
  scripts/bench-messages.py target/release/jetmill -- --mix 5000:factorial:1000 --concurrency 64
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_for(url, deadline, what):
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not get ready ({url})")


def connections(mon):
    conns = {}
    for c in get(f"{mon}/connz?limit=1024").get("connections", []):
        name = c.get("name") or f"cid{c['cid']}"
        agg = conns.setdefault(name, {"in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0})
        for k in agg:
            agg[k] += c.get(k, 0)
    return conns


def snapshot(mon):
    varz = get(f"{mon}/varz")
    conns = connections(mon)
    jsz = get(f"{mon}/jsz?streams=true")
    streams = {}
    for acc in jsz.get("account_details", []):
        for s in acc.get("stream_detail", []):
            streams[s["name"]] = s["state"]["last_seq"]
    return {"varz": varz, "conns": conns, "streams": streams}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", help="jetmill binary")
    ap.add_argument("--nats-server", default=os.environ.get("JETMILL_NATS_SERVER", ".tools/nats/bin/nats-server"))
    ap.add_argument("--concurrency", type=int, default=0, help="worker slots (0: the default)")
    ap.add_argument("bench", nargs=argparse.REMAINDER, help="-- then `jetmill bench` flags")
    args = ap.parse_args()
    bench_args = [a for a in args.bench if a != "--"] or ["--mix", "5000:factorial:1000"]

    work = tempfile.mkdtemp(prefix="jetmill-msgs-")
    port, mport, hport = free_port(), free_port(), free_port()
    nats_url, mon, url = f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{mport}", f"http://127.0.0.1:{hport}"
    env = dict(os.environ, JETMILL_NATS_URL=nats_url, JETMILL_LOG="warn")
    env.pop("JETMILL_CONCURRENCY", None)
    procs = []
    try:
        logs = open(os.path.join(work, "log"), "w")
        procs.append(subprocess.Popen(
            [args.nats_server, "-a", "127.0.0.1", "-p", str(port), "-m", str(mport), "-js",
             "-sd", os.path.join(work, "store")], stdout=logs, stderr=logs))
        wait_for(f"{mon}/healthz", time.time() + 20, "nats-server")
        procs.append(subprocess.Popen(
            [args.binary, "gateway", "--listen", f"127.0.0.1:{hport}"], stdout=logs, stderr=logs, env=env))
        wait_for(f"{url}/readyz", time.time() + 60, "the gateway")
        worker = [args.binary, "worker"]
        if args.concurrency:
            worker += ["--concurrency", str(args.concurrency)]
        procs.append(subprocess.Popen(worker, stdout=logs, stderr=logs, env=env))
        # The worker is up once its connection shows.
        deadline = time.time() + 30
        while len(get(f"{mon}/connz").get("connections", [])) < 2 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # let its consumers settle before counting
        before = snapshot(mon)
        bench = subprocess.Popen(
            [args.binary, "bench", "--gateway", url, "--server", nats_url, "--json", "--no-baseline"]
            + bench_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # The load generator's connection is gone once it exits: keep its last counts.
        seen = {}
        def poll():
            while bench.poll() is None:
                try:
                    seen.update(connections(mon))
                except Exception:
                    pass
                time.sleep(0.2)
        poller = threading.Thread(target=poll)
        poller.start()
        out, err = bench.communicate()
        poller.join()
        if bench.returncode not in (0, 1):
            raise RuntimeError(f"bench failed: {err[-2000:]}")
        summary = json.loads(out)
        time.sleep(0.5)  # the last acks
        after = snapshot(mon)
        for name, counts in seen.items():
            after["conns"].setdefault(name, counts)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

    jobs = summary.get("done")
    if not jobs:
        print(json.dumps(summary, indent=1), file=sys.stderr)
        raise RuntimeError("the bench summary names no completed count")
    print(f"{jobs} jobs, {summary.get('jobs_per_s', 0):,.0f} jobs/s, lost {summary.get('lost')}")
    v0, v1 = before["varz"], after["varz"]
    print(f"\nper job at nats-server: {(v1['in_msgs'] - v0['in_msgs']) / jobs:.2f} messages in, "
          f"{(v1['out_msgs'] - v0['out_msgs']) / jobs:.2f} out; "
          f"{(v1['in_bytes'] - v0['in_bytes']) / jobs:,.0f} bytes in, "
          f"{(v1['out_bytes'] - v0['out_bytes']) / jobs:,.0f} out")
    print("\n| connection | msgs in / job (to the server) | msgs out / job (from it) | bytes in / job | bytes out / job |")
    print("|---|---|---|---|---|")
    for name in sorted(set(after["conns"]) | set(before["conns"])):
        a, b = after["conns"].get(name, {}), before["conns"].get(name, {})
        d = {k: (a.get(k, 0) - b.get(k, 0)) / jobs for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes")}
        if any(d.values()):
            print(f"| {name} | {d['in_msgs']:.2f} | {d['out_msgs']:.2f} | {d['in_bytes']:,.0f} | {d['out_bytes']:,.0f} |")
    print("\n| stream | messages stored / job |")
    print("|---|---|")
    for name in sorted(after["streams"]):
        d = (after["streams"][name] - before["streams"].get(name, 0)) / jobs
        if d:
            print(f"| {name} | {d:.2f} |")


if __name__ == "__main__":
    main()
