"""The served app's own cost per request, in process: the project app vs the allow-all floor.

    .venv/bin/python -m bench.bench_app                      # this worktree, 5 rounds
    .venv/bin/python -m bench.bench_app --rev HEAD~1         # before/after, alternated in one run
    .venv/bin/python -m bench.bench_app --distinct 12288     # every pod one the memo has not seen

Flask's test client drives both apps (no gunicorn, no TLS: those cost both alike), with
the project set up as `serve` sets it up: multiprocess metrics (a private
PROMETHEUS_MULTIPROC_DIR) and the JSON log line at info, written to /dev/null. Each
(revision, round) is a fresh subprocess timing floor and project back to back in CPU
time of the process, so the machine's other load barely moves the figures; the report
is the median over rounds of µs per request and of the project/floor ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TIMER = r"""
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-app-metrics-")
requests, distinct = int(sys.argv[3]), int(sys.argv[4])
from bench.corpus import body_of, captured_reviews, distinct_bodies
from bench.floor_app import create_floor_app
from webhook.serving.app import create_app
from webhook.serving.logs import configure
configure("info", open(os.devnull, "w"))
review = captured_reviews()["pod-create"]
bodies = distinct_bodies(review, distinct) if distinct else [body_of(review)]
headers = {"Content-Type": "application/json"}
out = {}
for name, app in (("floor", create_floor_app()), ("project", create_app())):
    client = app.test_client()
    for i in range(300):
        assert client.post("/mutate", data=bodies[i % len(bodies)], headers=headers).status_code == 200
    started = time.process_time()
    for i in range(requests):
        client.post("/mutate", data=bodies[i % len(bodies)], headers=headers)
    out[name] = (time.process_time() - started) / requests * 1e6
print(json.dumps(out))
"""


def _export(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "webhook"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _time(webhook_root: Path, requests: int, distinct: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", TIMER, str(webhook_root), str(ROOT), str(requests), str(distinct)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="also time this git revision's webhook/, alternated with the worktree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--distinct",
        type=int,
        default=0,
        metavar="N",
        help="cycle through N pods differing in one label (decided afresh once N is over "
        "the memo's size) instead of repeating the captured pod",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        targets = {"worktree": ROOT}
        if args.rev:
            targets = {args.rev: _export(args.rev, Path(tmp)), "worktree": ROOT}
        rounds: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, root in targets.items():
                rounds[name].append(_time(root, args.requests, args.distinct))
    stream = f"{args.distinct} distinct pods" if args.distinct else "the captured pod repeated"
    print(f"CPU µs per request, Flask test client, {stream}, median of {args.rounds} rounds x {args.requests} requests")
    print("| revision | floor | project | project / floor |")
    print("|---|---|---|---|")
    for name, results in rounds.items():
        floor = statistics.median(r["floor"] for r in results)
        project = statistics.median(r["project"] for r in results)
        ratio = statistics.median(r["project"] / r["floor"] for r in results)
        print(f"| {name} | {floor:.1f} | {project:.1f} | {ratio:.2f} |")
    if args.rev:
        before = statistics.median(r["project"] for r in rounds[args.rev])
        after = statistics.median(r["project"] for r in rounds["worktree"])
        print(f"project after / before: {after / before:.2f} ({before:.1f} -> {after:.1f} µs)")


if __name__ == "__main__":
    main()
