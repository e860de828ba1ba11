#!/usr/bin/env python3
"""factorial(n) split into K parts on two single-slot workers, against one job on one
worker (its slot gets every core's thread), interleaved, in one `jetmill dev`.

  cargo build --release -p jetmill
  scripts/bench-split.py target/release/jetmill --n 10000000 --split 8 --rounds 2

Prints wall times (submit to done), each pair's ratio, and checks both give the same
SHA-256. Compare only within one run.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from importlib import import_module  # noqa: E402

ab = import_module("bench-ab")
wb = import_module("bench-workflows")


def single(base, n):
    t0 = time.time()
    job = wb.call(base + "/v1/jobs", "POST", {"kind": "factorial", "input": n})
    while True:
        rec = wb.call(base + f"/v1/jobs/{job['id']}?wait=30s")
        if rec["status"] in ("done", "failed", "cancelled"):
            break
    assert rec["status"] == "done", rec
    return time.time() - t0, rec["result_info"]["sha256"]


def split(base, n, k):
    t0 = time.time()
    wf = wb.call(base + "/v1/workflows", "POST", {"factorial": {"input": n, "split": k}})
    while True:
        view = wb.call(base + f"/v1/workflows/{wf['id']}?wait=30s")
        if view["status"] in ("done", "failed", "cancelled"):
            break
    assert view["status"] == "done", view
    took = time.time() - t0
    combine = [s for s in view["steps"] if s["name"] == "combine"][0]
    rec = wb.call(base + f"/v1/jobs/{combine['job_id']}")
    workers = {wb.call(base + f"/v1/jobs/{s['job_id']}")["worker"] for s in view["steps"]}
    return took, rec["result_info"]["sha256"], workers


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binary")
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--split", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--nats-server", default=os.environ.get("JETMILL_NATS_SERVER"))
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="jetmill-split-bench-")
    nats_port, http_port = ab.free_port(), ab.free_port()
    base = f"http://127.0.0.1:{http_port}"
    cmd = [a.binary, "dev", "--dir", work, "--nats-port", str(nats_port),
           "--listen", f"127.0.0.1:{http_port}", "--concurrency", "1"]
    if a.nats_server:
        cmd += ["--nats-server", a.nats_server]
    log = open(os.path.join(work, "dev.log"), "w")
    dev = subprocess.Popen(cmd, stdout=log, stderr=log)
    second = None
    try:
        if not ab.wait_ready(base, time.time() + 60):
            raise RuntimeError(f"jetmill dev did not get ready; see {work}/dev.log")
        print(f"| round | one job, one worker (s) | split {a.split}, two single-slot workers (s) | split / one |")
        print("|---|---|---|---|")
        for r in range(a.rounds):
            # The second worker only for the split runs: the single job has one worker.
            t1, h1 = single(base, a.n)
            second = subprocess.Popen(
                [a.binary, "worker", "--server", f"nats://127.0.0.1:{nats_port}",
                 "--concurrency", "1", "--worker-id", "second"],
                stdout=log, stderr=log)
            time.sleep(1.0)
            t2, h2, workers = split(base, a.n, a.split)
            second.send_signal(signal.SIGINT)
            second.wait(timeout=60)
            second = None
            if h1 != h2:
                raise RuntimeError(f"different digits: {h1} vs {h2}")
            print(f"| {r + 1} | {t1:.2f} | {t2:.2f} (workers: {len(workers)}) | {t2 / t1:.2f}x |", flush=True)
        print("\nsame SHA-256 on both paths")
    finally:
        if second:
            second.kill()
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
