"""How long `plan` takes on a 1,000-pod demand that needs about 200 GPUs.

Run: .venv/bin/python bench/bench_plan.py [--pods 1000] [--seed 1] [--time-limit 60]
Builds 1,000 pods sized by annotations (random model sizes and precisions, one H100-80GB pool),
sizes them with the webhook's decision, solves, places every pod, and prints the wall
time of each step, the GPU count, its lower bound and whether it is proven optimal.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from webhook.core.policy import default_policy
from webhook.planning.demand import Demand, workload_of
from webhook.planning.fleet import plan_fleet
from webhook.planning.live import layout_of_config_name
from webhook.planning.solver import LiveGpu

# (model size, precision, GPUs per pod), drawn with the weights below
KINDS = [
    ("7b", "fp16", 1),
    ("3b", "fp16", 1),
    ("34b", "int4", 1),
    ("13b", "fp16", 1),
    ("70b", "fp16", 2),
    ("1b", "fp16", 1),
    ("8b", "int8", 1),
    ("20b", "fp16", 1),
    ("70b", "int4", 1),
]
WEIGHTS = [20, 35, 5, 8, 1, 20, 15, 3, 1]


def pods(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size, precision, gpus = rng.choices(KINDS, WEIGHTS)[0]
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"pod-{i}",
                    "annotations": {"gpu-rightsizer.io/model-size": size, "gpu-rightsizer.io/precision": precision},
                },
                "spec": {
                    "containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]
                },
            }
        )
    return out


LABELS = ["all-disabled", "all-1g.10gb", "all-1g.20gb", "all-2g.20gb", "all-3g.40gb", "all-balanced", "all-7g.80gb"]


def live_gpus(nodes: int, policy, seed: int) -> list:
    rng = random.Random(seed)
    model = policy.pools[0].model
    out = []
    for n in range(nodes):
        label = rng.choice(LABELS)
        layout = layout_of_config_name(label, model)
        out.extend(LiveGpu(f"node-{n}", i, layout, label) for i in range(8))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--gpus", type=int, help="limit the pool to this many GPUs (adds the left-over stage)")
    parser.add_argument(
        "--live",
        type=int,
        metavar="NODES",
        help="plan onto NODES live 8-GPU nodes with random current mig.config labels",
    )
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    policy = default_policy()
    t0 = time.perf_counter()
    demand = Demand([workload_of(p, "bench", policy) for p in pods(args.pods, args.seed)])
    t1 = time.perf_counter()
    limits = {policy.pools[0].name: args.gpus} if args.gpus is not None else None
    live = {policy.pools[0].name: live_gpus(args.live, policy, args.seed)} if args.live else None
    plan = plan_fleet(demand, policy, limits, live, time_limit=args.time_limit, workers=args.workers)
    t2 = time.perf_counter()
    pool = plan.pools[0]
    print(f"cores: {os.cpu_count()}  pods: {args.pods}  units: {len(demand.units)}  seed: {args.seed}")
    print(f"sizing (webhook decision per pod): {t1 - t0:.2f}s")
    print(
        f"solve + place: {t2 - t1:.2f}s (CP-SAT {pool.seconds:.2f}s; stages: "
        + ", ".join(f"{s.name}={s.value}{'' if s.proven else ' (not proven)'}" for s in pool.stages)
        + ")"
    )
    print(
        f"GPUs: {plan.gpu_count} right-sized vs {plan.whole_gpu_baseline} whole-GPU "
        f"(ratio {plan.ratio:.2f}x); lower bound {plan.lower_bound}; "
        + ("proven optimal" if plan.proven_optimal else f"gap {pool.gap}")
    )
    if plan.live:
        print(
            f"live: {args.live} nodes x 8 GPUs; reconfigured GPUs: {sum(p.reconfigurations for p in plan.pools)}; pods moved: {len(plan.moves())}"
        )
    if plan.left_over:
        print(f"left over: {len(plan.left_over)} units")
    print(f"total: {t2 - t0:.2f}s")


if __name__ == "__main__":
    main()
