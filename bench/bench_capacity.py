"""Capacity-aware choice: what it costs (docs/capacity.md). Not part of make test.

1. decide() for a typical pod (7b model, mixed pool) without and with a capacity view of
   5,000 GPU nodes (median of many runs, same process): the added time must be <= 10 us.
2. The watcher's memory for 5,000 GPU nodes and 100,000 GPU pods fed through a fake watch
   source (list + watch events), tracemalloc'd: must be <= 64 MiB.

    .venv/bin/python bench/bench_capacity.py
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc

import yaml

from webhook.core.capacity import CapacityRead
from webhook.core.decision import decide
from webhook.core.policy import compile_policy, default_policy_text
from webhook.serving.cluster_watch import ClusterWatch

NODES, PODS = 5_000, 100_000
PRODUCT = "NVIDIA-H100-80GB-HBM3"
LAYOUT = {"nvidia.com/mig-1g.10gb": 14, "nvidia.com/mig-2g.20gb": 4, "nvidia.com/mig-3g.40gb": 4}


def node(i: int) -> dict:
    return {
        "kind": "Node",
        "metadata": {
            "name": f"gpu-{i}",
            "resourceVersion": str(i),
            "labels": {
                "kubernetes.io/hostname": f"gpu-{i}",
                "nvidia.com/gpu.product": PRODUCT,
                "nvidia.com/mig.capable": "true",
                "nvidia.com/gpu.count": "8",
                "topology.kubernetes.io/zone": f"zone-{i % 3}",
            },
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "96", "memory": "1Ti", **{k: str(v) for k, v in LAYOUT.items()}},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(i: int) -> dict:
    profile = ("1g.10gb", "2g.20gb", "3g.40gb")[i % 3]
    return {
        "kind": "Pod",
        "metadata": {
            "name": f"worker-{i:06d}-abcde",
            "namespace": f"team-{i % 50}",
            "generateName": f"worker-{i:06d}-",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "resourceVersion": str(10_000 + i),
            "annotations": {"gpu-rightsizer.io/assigned-profile": profile, "gpu-rightsizer.io/decision": "x" * 200},
        },
        "spec": {
            "nodeName": f"gpu-{i % NODES}" if i % 10 else "",
            "containers": [{"name": "main", "resources": {"limits": {f"nvidia.com/mig-{profile}": "1"}}}],
        },
        "status": {"phase": "Running" if i % 10 else "Pending"},
    }


class FakeSource:
    """Lists half the objects and delivers the other half as watch events."""

    def __init__(self):
        self.done = {"nodes": False, "pods": False}

    def list(self, kind):
        make, n = (node, NODES) if kind == "nodes" else (pod, PODS)
        return [make(i) for i in range(n // 2)], "1"

    def watch(self, kind, rv, timeout_seconds):
        if not self.done[kind]:
            self.done[kind] = True
            make, n = (node, NODES) if kind == "nodes" else (pod, PODS)
            for i in range(n // 2, n):
                yield {"type": "ADDED", "object": make(i)}
        time.sleep(0.2)


def typical_pod() -> dict:
    return {
        "metadata": {"name": "llm", "namespace": "team-1", "annotations": {"gpu-rightsizer.io/model-size": "7b"}},
        "spec": {"containers": [{"name": "main", "image": "vllm", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
    }


def median_us(fn, runs: int = 20_000) -> float:
    for _ in range(500):
        fn()
    samples = []
    for _ in range(25):
        t0 = time.perf_counter()
        for _ in range(runs // 25):
            fn()
        samples.append((time.perf_counter() - t0) / (runs // 25) * 1e6)
    return statistics.median(samples)


def main() -> None:
    data = yaml.safe_load(default_policy_text())
    data["capacity"] = {"mode": "prefer-free"}
    policy = compile_policy(data)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    watch = ClusterWatch(FakeSource(), lambda: policy, debounce=0.05)
    t0 = time.perf_counter()
    watch.start()
    while watch.view is None or watch.view.pods < PODS or len(watch.view.nodes) < NODES:
        time.sleep(0.05)
    synced = time.perf_counter() - t0
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    view = watch.view
    t0 = time.perf_counter()
    snap = watch.tally.snapshot(0.0)
    snap.supply(policy)
    rebuild = time.perf_counter() - t0
    watch.stop()

    p = typical_pod()
    read = CapacityRead(view, view.observed_at + 1.0)
    static = median_us(lambda: decide(p, policy))
    with_view = median_us(lambda: decide(p, policy, read))
    print(
        f"conditions: {NODES} GPU nodes ({sum(LAYOUT.values())} slices each), {PODS} GPU pods, default policy + capacity.mode prefer-free"
    )
    print(
        f"decide, typical pod: static {static:.1f} us, with view {with_view:.1f} us: +{with_view - static:.1f} us (limit 10 us)"
    )
    print(
        f"watcher (tally + published view) memory: {held / 2**20:.1f} MiB (limit 64 MiB); synced through the fake source in {synced:.1f} s"
    )
    print(f"one new view (snapshot + supply for the policy): {rebuild * 1000:.0f} ms")
    print(
        f"ratios: added decide time {((with_view - static) / 10):.2f} of the limit; memory {held / (64 * 2**20):.2f} of the limit"
    )


if __name__ == "__main__":
    main()
