#!/usr/bin/env python3
"""Interleaved A/B of two jetmill builds, with CPU per job per process.

Each round starts `jetmill dev` of build A on fresh ports and a fresh store, runs
`jetmill bench` against it, stops it, then does the same for build B (then B before
A in the next round, to cancel drift). Around every bench run it reads
/proc/<pid>/stat of nats-server, the `jetmill dev` process (gateway + worker) and the
load generator, so each row says how much CPU one job cost in each process. The
machine's speed drifts within the hour: compare A and B only within this output.

  cargo build --release -p jetmill                  # after-build: target/release/jetmill
  git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release -p jetmill)
  scripts/bench-ab.py /tmp/before/target/release/jetmill target/release/jetmill \\
      --rounds 3 -- --mix 10000:factorial:1000 --concurrency 64

Extra `jetmill bench` flags go after `--`; `--batch N` etc. are passed to B only when
given with --b-extra. Prints one line per run and a summary table (markdown).
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

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process and its reaped children, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime 15, cutime 16, cstime 17.
    return sum(int(x) for x in fields[11:15]) / TICK


def children(pid):
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out = [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def wait_ready(url, deadline):
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def one_run(binary, label, bench_args, concurrency, nats_server):
    work = tempfile.mkdtemp(prefix=f"jetmill-ab-{label}-")
    nats_port, http_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    env = dict(os.environ)
    env.pop("JETMILL_CONCURRENCY", None)
    cmd = [binary, "dev", "--dir", work, "--nats-port", str(nats_port),
           "--listen", f"127.0.0.1:{http_port}"]
    if concurrency:
        cmd += ["--concurrency", str(concurrency)]
    if nats_server:
        cmd += ["--nats-server", nats_server]
    log = open(os.path.join(work, "dev.log"), "w")
    dev = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    try:
        if not wait_ready(url, time.time() + 60):
            raise RuntimeError(f"{label}: jetmill dev did not get ready; see {work}/dev.log")
        kids = [p for p in children(dev.pid) if "nats-server" in open(f"/proc/{p}/cmdline").read()]
        nats_pid = kids[0] if kids else None
        bench = subprocess.Popen(
            [binary, "bench", "--gateway", url, "--server", f"nats://127.0.0.1:{nats_port}",
             "--json"] + bench_args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # Sample every process's CPU while the bench runs; the load phase is the first
        # `seconds` of it (then the broker baseline runs, which must not be counted).
        samples = []
        def sample():
            while bench.poll() is None:
                try:
                    samples.append((time.time(), cpu_seconds(dev.pid),
                                    cpu_seconds(nats_pid) if nats_pid else 0.0,
                                    cpu_seconds(bench.pid)))
                except OSError:
                    break
                time.sleep(0.05)
        t0 = time.time()
        sampler = threading.Thread(target=sample)
        sampler.start()
        out, err = bench.communicate()
        sampler.join()
        wall = time.time() - t0
        if bench.returncode not in (0, 1) or not out.strip():
            raise RuntimeError(f"{label}: bench failed ({bench.returncode}): {err[-2000:]}")
        summary = json.loads(out)
        if len(samples) < 2:
            raise RuntimeError(f"{label}: the bench ended before CPU could be sampled")
        end = t0 + summary["seconds"] + 0.1
        first = samples[0]
        last = max((x for x in samples if x[0] <= end), key=lambda x: x[0], default=samples[-1])
        return summary, last[1] - first[1], last[2] - first[2], last[3] - first[3], wall
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="jetmill binary of build A (before)")
    ap.add_argument("b", help="jetmill binary of build B (after)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=0, help="worker slots (0: the default)")
    ap.add_argument("--b-extra", default="", help="bench flags for B only, e.g. '--batch 100'")
    ap.add_argument("--a-extra", default="", help="bench flags for A only")
    ap.add_argument("--nats-server", default=os.environ.get("JETMILL_NATS_SERVER"))
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    bench_args = argv[cut + 1:]
    rows = []
    for r in range(args.rounds):
        order = [("A", args.a, args.a_extra), ("B", args.b, args.b_extra)]
        if r % 2:
            order.reverse()
        for label, binary, extra in order:
            summary, dev_cpu, nats_cpu, gen_cpu, wall = one_run(
                binary, label, bench_args + extra.split(), args.concurrency, args.nats_server)
            jobs = max(summary.get("done", 0), 1)
            row = {
                "build": label,
                "round": r + 1,
                "jobs_per_s": summary["jobs_per_s"],
                "p99_ms": summary["latency"]["p99_ms"] if "p99_ms" in summary["latency"] else None,
                "lost": summary["lost"],
                "broker_msgs_per_s": (summary.get("baseline") or {}).get("publish_consume_msgs_per_s"),
                "fraction_of_broker": summary.get("fraction_of_broker"),
                "cpu_ms_per_job": {
                    "nats_server": 1000 * nats_cpu / jobs,
                    "gateway_worker": 1000 * dev_cpu / jobs,
                    "load_generator": 1000 * gen_cpu / jobs,
                },
                "wall_s": wall,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| build | round | jobs/s | p99 | lost | broker msgs/s | jetmill/broker | CPU ms/job nats-server | gateway+worker | load generator | total |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        c = x["cpu_ms_per_job"]
        frac = x["fraction_of_broker"]
        print(f"| {x['build']} | {x['round']} | {x['jobs_per_s']:,.0f} | {x['p99_ms']} ms | {x['lost']} | "
              f"{(x['broker_msgs_per_s'] or 0):,.0f} | {(frac or 0) * 100:.1f}% | {c['nats_server']:.3f} | "
              f"{c['gateway_worker']:.3f} | {c['load_generator']:.3f} | {sum(c.values()):.3f} |")


if __name__ == "__main__":
    sys.exit(main())
