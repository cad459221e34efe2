"""Every benchmark in one run: `make bench` (or `.venv/bin/python -m bench.run_all`).

Writes bench/results/{decide,gc,served,apiserver}.{md,json}, served-latency.png, and
summary.md (all the tables) + summary.json. Not part of `make test`: these print
figures, they do not pass or fail.
"""

from __future__ import annotations

import argparse
import json
import time

from bench import bench_apiserver, bench_decide, bench_gc, bench_served
from bench.stats import RESULTS, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmarks)")
    parser.add_argument("--skip-apiserver", action="store_true", help="no control plane (no Go toolchain/binaries)")
    args = parser.parse_args()
    started = time.monotonic()
    parts = {"machine": machine()}
    sections = []
    decide = bench_decide.run(0.3 if args.quick else 1.0)
    sections.append(decide.pop("markdown"))
    parts["decide"] = decide
    print(sections[-1], flush=True)
    gc_pauses = bench_gc.run(5000 if args.quick else 30000)
    sections.append(gc_pauses.pop("markdown"))
    parts["gc"] = gc_pauses
    print(sections[-1], flush=True)
    if args.quick:
        served = bench_served.run(
            (1, 2), rounds=5, sat_seconds=1.0, rate_seconds=1.5, rates=(250, 1000), stack_checks=False
        )
    else:
        served = bench_served.run()
    sections.append(served.pop("markdown"))
    parts["served"] = served
    print(sections[-1], flush=True)
    if not args.skip_apiserver:
        api = bench_apiserver.run(60 if args.quick else 1000)
        sections.append(api.pop("markdown"))
        parts["apiserver"] = api
        print(sections[-1], flush=True)
    parts["seconds"] = time.monotonic() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(parts, indent=1, default=str))
    (RESULTS / "summary.md").write_text(
        "# gpu-rightsizer benchmarks\n\n"
        + "\n".join(sections)
        + f"\n![latency vs offered load](served-latency.png)\n\nTotal run time {parts['seconds']:.0f} s.\n"
    )
    print(f"results in {RESULTS}/ ({parts['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
