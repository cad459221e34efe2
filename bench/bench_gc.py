"""Garbage-collector pauses in a worker, with and without gunicorn_conf.post_worker_init.

    .venv/bin/python -m bench.bench_gc [--requests 30000]

A worker's long-lived objects (modules, Flask, the policy, the catalog) are walked by
every full collection, with the GIL held: no request of that worker moves meanwhile.
``post_worker_init`` freezes them (gc.freeze) once the app is loaded. This times every
collection (gc.callbacks) while the app, set up as `serve` sets it up, answers
``--requests`` reviews through Flask's test client, each variant in a fresh process:
the typical pod repeated (memo hits) and pods that never repeat (each decided afresh).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.stats import machine, md_table, write_result

ROOT = Path(__file__).resolve().parent.parent

TIMER = r"""
import gc, json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-gc-metrics-")
freeze, stream, requests = sys.argv[2] == "frozen", sys.argv[3], int(sys.argv[4])
from bench.corpus import body_of, captured_reviews, distinct_bodies
from webhook.serving import gunicorn_conf
from webhook.serving.app import create_app
from webhook.serving.logs import configure
configure("info", open(os.devnull, "w"))
review = captured_reviews()["pod-create"]
bodies = distinct_bodies(review, 12288) if stream == "distinct" else [body_of(review)]
client = create_app().test_client()
headers = {"Content-Type": "application/json"}
if freeze:
    gunicorn_conf.post_worker_init(None)
tracked = len(gc.get_objects())
pauses = {0: [], 1: [], 2: []}
started = [0.0]
def timed(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        pauses[info["generation"]].append((time.perf_counter() - started[0]) * 1000)
gc.callbacks.append(timed)
for i in range(requests):
    client.post("/mutate", data=bodies[i % len(bodies)], headers=headers)
gc.callbacks.remove(timed)
print(json.dumps({"tracked_objects": tracked, "frozen_objects": gc.get_freeze_count(),
                  "pauses": {g: [len(p), sum(p), max(p, default=0.0)] for g, p in pauses.items()}}))
"""


def run(requests: int = 30000) -> dict:
    results = {}
    for stream in ("typical", "distinct"):
        for variant in ("as loaded", "frozen"):
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    TIMER,
                    str(ROOT),
                    "frozen" if variant == "frozen" else "plain",
                    stream,
                    str(requests),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results[f"{stream}, {variant}"] = json.loads(done.stdout.strip().splitlines()[-1])
    rows = []
    for name, r in results.items():
        rows.append(
            [name, r["tracked_objects"], r["frozen_objects"]]
            + [f"{n}, {total:.1f}, {longest:.2f}" for n, total, longest in r["pauses"].values()]
        )
    md = (
        f"## Garbage-collector pauses in a worker ({requests} reviews in process; count, total ms, longest ms)\n\n"
        + md_table(["stream, worker heap", "objects walked", "objects frozen", "gen 0", "gen 1", "gen 2 (full)"], rows)
        + "\n'frozen' is the worker after gunicorn_conf.post_worker_init (gc.freeze once the app is loaded); "
        "a collection holds the GIL, so its pause is every in-flight request's of that worker.\n"
    )
    data = {"machine": machine(), "requests": requests, "results": results}
    write_result("gc", data, md)
    return data | {"markdown": md}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30000)
    args = parser.parse_args()
    print(run(args.requests)["markdown"])


if __name__ == "__main__":
    main()
