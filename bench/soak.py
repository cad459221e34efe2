"""Soak a real `gpu-rightsizer serve` at a steady rate and report failures and worker RSS.

    .venv/bin/python -m bench.soak --minutes 10 [--rps 100] [--connections 4] [--workers 2]

Prints a line every --every seconds (requests, failures, RSS of each worker from
/proc/<pid>/status) and a summary; exits 1 on any failed request or worker restart. The
CI version is tests/reliability/test_load_faults.py (30 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.support.loadgen import LoadGenerator
from tests.support.served import rss_kib, start_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rps", type=float, default=100)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=float, default=30, help="seconds between progress lines")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), workers=args.workers)
        try:
            pids = sorted(server.worker_pids())
            gen = LoadGenerator(server, rps=args.rps, connections=args.connections).start()
            started = time.monotonic()
            end = started + args.minutes * 60
            samples = []
            while time.monotonic() < end:
                time.sleep(min(args.every, max(0.0, end - time.monotonic())))
                rss = {pid: rss_kib(pid) for pid in pids if Path(f"/proc/{pid}").exists()}
                samples.append(rss)
                r = gen.result
                print(
                    f"t={time.monotonic() - started:6.0f}s requests={len(r.requests)} failed={len(r.failures)} "
                    f"rss_kib={rss}",
                    flush=True,
                )
            result = gen.stop()
            restarted = sorted(server.worker_pids()) != pids
        finally:
            server.stop()
    first, last = samples[0], samples[-1]
    print(f"\n{args.minutes:g} min at {args.rps:g} rps, {args.connections} connections, {args.workers} workers:")
    print(f"  {result.summary()}")
    for pid in pids:
        print(f"  worker {pid}: RSS {first.get(pid)} KiB after {args.every:g} s -> {last.get(pid)} KiB at the end")
    if restarted:
        print("  a worker was restarted during the soak")
    return 1 if result.failures or restarted else 0


if __name__ == "__main__":
    sys.exit(main())
