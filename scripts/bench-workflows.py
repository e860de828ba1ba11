#!/usr/bin/env python3
"""A fan-out of N small steps plus one fan-in, against the same N+1 jobs as a batch.

Starts one `jetmill dev` (fresh ports and store), then runs interleaved rounds:
a batch of N+1 factorial jobs (`POST /v1/jobs/batch`, timed until every job ended),
then a workflow of N factorial steps and a `sum` fan-in of their results
(`POST /v1/workflows`, timed until the fan-in is done), alternating which goes first.
Prints each pair's ratio (workflow / batch); compare only within one run.

  cargo build --release -p jetmill
  scripts/bench-workflows.py target/release/jetmill --steps 1000 --rounds 4
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from importlib import import_module  # noqa: E402

ab = import_module("bench-ab")


def call(url, method="GET", body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    # No result cache: workflow steps do not use it, so the batch must not either.
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Cache-Control": "no-cache"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def run_batch(base, n, input_n):
    """N jobs in one batch (at most 1,000 fit) plus the N+1st as a single submit."""
    specs = [{"kind": "factorial", "input": input_n + i % 7} for i in range(n)]
    t0 = time.time()
    answer = call(base + "/v1/jobs/batch", "POST", specs)
    last = call(base + "/v1/jobs", "POST", {"kind": "factorial", "input": input_n})
    while True:
        status = call(base + f"/v1/batches/{answer['id']}?wait=30s")
        if status["done"]:
            break
    while call(base + f"/v1/jobs/{last['id']}?wait=30s")["status"] != "done":
        pass
    counts = dict(status["counts"])
    counts["done"] = counts.get("done", 0) + 1
    return time.time() - t0, counts


def run_workflow(base, n, input_n):
    body = {"fan_out": [{"kind": "factorial", "input": input_n + i % 7} for i in range(n)],
            "fan_in": {"kind": "sum"}}
    t0 = time.time()
    answer = call(base + "/v1/workflows", "POST", body)
    while True:
        wf = call(base + f"/v1/workflows/{answer['id']}?wait=30s")
        if wf["status"] in ("done", "failed", "cancelled"):
            break
    return time.time() - t0, wf["counts"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binary")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--input", type=int, default=1000, help="factorial argument of each step")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--nats-server", default=os.environ.get("JETMILL_NATS_SERVER"))
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="jetmill-wf-bench-")
    nats_port, http_port = ab.free_port(), ab.free_port()
    base = f"http://127.0.0.1:{http_port}"
    cmd = [a.binary, "dev", "--dir", work, "--nats-port", str(nats_port),
           "--listen", f"127.0.0.1:{http_port}"]
    if a.nats_server:
        cmd += ["--nats-server", a.nats_server]
    log = open(os.path.join(work, "dev.log"), "w")
    dev = subprocess.Popen(cmd, stdout=log, stderr=log)
    ratios = []
    try:
        if not ab.wait_ready(base, time.time() + 60):
            raise RuntimeError(f"jetmill dev did not get ready; see {work}/dev.log")
        run_batch(base, 50, a.input)  # warm-up
        run_workflow(base, 50, a.input)
        print(f"| round | batch of {a.steps + 1} jobs (s) | workflow of {a.steps} + fan-in (s) | workflow / batch |")
        print("|---|---|---|---|")
        for r in range(a.rounds):
            if r % 2 == 0:
                tb, cb = run_batch(base, a.steps, a.input)
                tw, cw = run_workflow(base, a.steps, a.input)
            else:
                tw, cw = run_workflow(base, a.steps, a.input)
                tb, cb = run_batch(base, a.steps, a.input)
            if cw.get("done") != a.steps + 1 or cb.get("done") != a.steps + 1:
                raise RuntimeError(f"not every job ended done: batch {cb}, workflow {cw}")
            ratios.append(tw / tb)
            print(f"| {r + 1} | {tb:.2f} | {tw:.2f} | {tw / tb:.2f}x |", flush=True)
        ratios.sort()
        print(f"\nmedian workflow / batch: {ratios[len(ratios) // 2]:.2f}x")
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
