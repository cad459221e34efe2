"""Decision + patch time of the typical pod at two git revisions, alternated in one run.

    .venv/bin/python -m bench.compare_revisions OLD_REV [NEW_REV or "worktree"] [--rounds 5]

Each revision's webhook/ is exported (git archive) to a temp dir and timed in a fresh
subprocess, alternately, so that the machine's noise hits both alike; prints the median
of per-round medians and their ratio. This is how the README's before/after figures for
a code change are measured.
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
import json, sys, time
sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])
from bench.corpus import corpus
from webhook.admission.answer import pod_patch
from webhook.core.policy import default_policy
policy = default_policy()
out = {}
for kind in ("single", "affinity-3-terms", "pod-200k"):
    pod = corpus()[kind]["request"]["object"]
    for _ in range(200):
        pod_patch(pod, policy)
    samples = []
    for _ in range(3000):
        t = time.perf_counter_ns(); pod_patch(pod, policy); samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    out[kind] = samples[len(samples) // 2]
print(json.dumps(out))
"""


def export(rev: str, into: Path) -> Path:
    if rev == "worktree":
        return ROOT
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "webhook"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new", nargs="?", default="worktree")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {rev: export(rev, Path(tmp) / rev.replace("/", "_")) for rev in (args.old, args.new)}
        runs = {rev: [] for rev in dirs}
        for r in range(args.rounds):
            for rev in list(dirs) if r % 2 == 0 else list(dirs)[::-1]:
                out = subprocess.run(
                    [sys.executable, "-c", TIMER, str(dirs[rev]), str(ROOT)], capture_output=True, text=True, check=True
                ).stdout
                runs[rev].append(json.loads(out))
    for kind in runs[args.old][0]:
        old = statistics.median(r[kind] for r in runs[args.old])
        new = statistics.median(r[kind] for r in runs[args.new])
        print(f"{kind}: {args.old} {old:.1f} us, {args.new} {new:.1f} us, ratio new/old {new / old:.2f}")


if __name__ == "__main__":
    main()
