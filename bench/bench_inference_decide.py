"""Cost of the inference estimate in the decision, against the core estimate.

    .venv/bin/python bench/bench_inference_decide.py [N]

Runs webhook.core.decision.decide N times (default 20000) on a core pod (model-size) and an
inference pod (model + context-length + max-concurrency), alternating rounds after a
warm-up, and prints microseconds per decision and the ratio, measured in one run.
"""

from __future__ import annotations

import os
import sys
import time

from webhook.core.decision import decide
from webhook.core.policy import default_policy


def pod(annotations: dict) -> dict:
    return {
        "metadata": {"annotations": annotations},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }


def per_decision(p: dict, policy, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        decide(p, policy)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    policy = default_policy()
    core = pod({"gpu-rightsizer.io/model-size": "7b"})
    inference = pod(
        {
            "gpu-rightsizer.io/model": "llama-3.1-8b",
            "gpu-rightsizer.io/precision": "bf16",
            "gpu-rightsizer.io/context-length": "8k",
            "gpu-rightsizer.io/max-concurrency": "4",
        }
    )
    per_decision(core, policy, n // 10)
    per_decision(inference, policy, n // 10)
    core_us = min(per_decision(core, policy, n) for _ in range(3))
    inference_us = min(per_decision(inference, policy, n) for _ in range(3))
    print(f"decide(), best of 3 x {n}, 1 process on {os.cpu_count()} cores:")
    print(f"  core (model-size)              {core_us:7.1f} us/decision")
    print(f"  inference (model + 8k x 4)     {inference_us:7.1f} us/decision")
    print(f"  ratio inference/core           {inference_us / core_us:7.2f}")


if __name__ == "__main__":
    main()
