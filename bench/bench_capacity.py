"""Capacity-aware choice: what it costs (docs/capacity.md). Not part of make test.

1. decide() for a typical pod (7b model, mixed pool) without and with a capacity view of
   5,000 GPU nodes (median of many runs, same process): the added time must be <= 10 us.
2. The watcher's memory for 5,000 GPU nodes and 100,000 GPU pods fed through a fake watch
   source (list + watch events), tracemalloc'd: must be <= 64 MiB.

    .venv/bin/python -m bench.bench_capacity
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
import tracemalloc

import orjson
import yaml

from tests.support.fixtures import review_for
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers
from webhook.admission.capacity_answers import CapacityAnswers
from webhook.core.capacity import CapacityRead, slice_key
from webhook.core.decision import decide
from webhook.core.policy import compile_policy, default_policy_text
from webhook.serving.cluster_watch import ClusterWatch

NODES, PODS = 5_000, 100_000
CHURN_PER_S = 200  # pod updates per second while measuring admissions under churn
PRODUCT = "NVIDIA-H100-80GB-HBM3"
LAYOUT = {"nvidia.com/mig-1g.10gb": 14, "nvidia.com/mig-2g.20gb": 4, "nvidia.com/mig-3g.40gb": 4}


# What GPU feature discovery, the GPU operator and node feature discovery put on a real
# GPU node: about 130 labels, most of them the same on every node of a pool.
_GFD_PROFILE_KEYS = (
    "count",
    "engines.copy",
    "engines.decoder",
    "engines.encoder",
    "engines.jpeg",
    "engines.ofa",
    "memory",
    "multiprocessors",
    "product",
    "replicas",
    "slices.ci",
    "slices.gi",
)
FLEET_LABELS = {
    **{
        f"nvidia.com/{k}": "1"
        for k in (
            "cuda.driver.major",
            "cuda.driver.minor",
            "cuda.driver.rev",
            "cuda.runtime.major",
            "cuda.runtime.minor",
            "gpu.compute.major",
            "gpu.compute.minor",
            "gpu.family",
            "gpu.machine",
            "gpu.memory",
            "gpu.replicas",
            "gpu.sharing-strategy",
            "mig.strategy",
            "mig.config",
            "mig.config.state",
            "gfd.timestamp",
        )
    },
    **{f"nvidia.com/mig-{p}.{k}": "1" for p in ("1g.10gb", "2g.20gb", "3g.40gb") for k in _GFD_PROFILE_KEYS},
    **{
        f"nvidia.com/gpu.deploy.{c}": "true"
        for c in (
            "container-toolkit",
            "dcgm",
            "dcgm-exporter",
            "device-plugin",
            "driver",
            "gpu-feature-discovery",
            "mig-manager",
            "node-status-exporter",
            "operator-validator",
        )
    },
    **{f"feature.node.kubernetes.io/cpu-cpuid.{f}": "true" for f in range(60)},
    **{f"feature.node.kubernetes.io/kernel-config.{f}": "true" for f in range(8)},
    **{
        f"feature.node.kubernetes.io/{k}": "1"
        for k in (
            "kernel-version.full",
            "kernel-version.major",
            "kernel-version.minor",
            "pci-10de.present",
            "system-os_release.ID",
            "system-os_release.VERSION_ID",
            "storage-nonrotationaldisk",
            "cpu-model.family",
            "cpu-model.id",
            "cpu-model.vendor_id",
        )
    },
}


def node(i: int) -> dict:
    return {
        "kind": "Node",
        "metadata": {
            "name": f"gpu-{i}",
            "resourceVersion": str(i),
            "labels": {
                **FLEET_LABELS,
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
    # In proportion to the slices (14:4:4), so the cluster is 91 % full and every profile
    # still has some free.
    k = i % 22
    profile = "1g.10gb" if k < 14 else "2g.20gb" if k < 18 else "3g.40gb"
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


def decoded(obj: dict) -> dict:
    """As the API server's JSON decodes: every string its own object, as in a real watch."""
    return orjson.loads(orjson.dumps(obj))


class FakeSource:
    """Lists half the objects and delivers the other half as watch events; then, while
    ``churn`` is set, a steady stream of pod updates (``CHURN_PER_S``), as a busy cluster's
    pod watch carries: half of them move a slice, half change nothing the view keeps."""

    def __init__(self):
        self.done = {"nodes": False, "pods": False}
        self.churn = threading.Event()
        self.tick = 0

    def list(self, kind):
        make, n = (node, NODES) if kind == "nodes" else (pod, PODS)
        return [decoded(make(i)) for i in range(n // 2)], "1"

    def watch(self, kind, rv, timeout_seconds):
        if not self.done[kind]:
            self.done[kind] = True
            make, n = (node, NODES) if kind == "nodes" else (pod, PODS)
            for i in range(n // 2, n):
                yield {"type": "ADDED", "object": decoded(make(i))}
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            if kind == "pods" and self.churn.is_set():
                self.tick += 1
                changed = pod((self.tick * 7919) % PODS)
                if self.tick % 2:  # a pod bound elsewhere: a slice moves
                    changed["spec"]["nodeName"] = f"gpu-{(self.tick * 31) % NODES}"
                yield {"type": "MODIFIED", "object": decoded(changed)}
                time.sleep(1 / CHURN_PER_S)
            else:
                time.sleep(0.05)


def typical_pod(size: str = "7b") -> dict:
    return {
        "metadata": {"name": "llm", "namespace": "team-1", "annotations": {"gpu-rightsizer.io/model-size": size}},
        "spec": {"containers": [{"name": "main", "image": "vllm", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
    }


def added_us(base, other, runs: int = 20_000) -> tuple[float, float, float]:
    """Median per-call time of ``base`` and ``other`` and the median of their per-round
    difference, the two interleaved round by round so a busy machine slows both alike."""
    for _ in range(500):
        base()
        other()
    rounds, n = 25, runs // 25
    a, b, diff = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            base()
        t1 = time.perf_counter()
        for _ in range(n):
            other()
        t2 = time.perf_counter()
        a.append((t1 - t0) / n * 1e6)
        b.append((t2 - t1) / n * 1e6)
        diff.append(b[-1] - a[-1])
    return statistics.median(a), statistics.median(b), statistics.median(diff)


def admissions(policy, watch: ClusterWatch, source: FakeSource) -> None:
    """admit() of a typical pod's dry-run create (dry runs hold no slice, so every call
    sees the same view), one due every millisecond: capacity off, capacity on with a quiet
    watch, and capacity on while the watcher takes CHURN_PER_S pod updates and publishes
    views from them in the same process (its GIL is the admissions' GIL). In process, not
    over TLS: what the watcher adds, not what a request costs (bench/bench_served.py)."""
    review = review_for(typical_pod(), dry_run=True)
    plain = PlainAnswers(compile_policy(yaml.safe_load(default_policy_text())))
    aware = CapacityAnswers(policy, lambda: watch.view)

    def latencies(answers, seconds: float = 4.0, every: float = 0.001) -> list[float]:
        """Open loop: a request is due every ``every`` s, and its latency runs from when it
        was due, so time spent waiting for the GIL (held by the publisher) counts too."""
        out = []
        due = time.perf_counter()
        end = due + seconds
        while due < end:
            due += every
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            admit(review, answers)
            out.append((time.perf_counter() - due) * 1e6)
        return sorted(out)

    def line(name: str, sample: list[float]) -> tuple[float, float]:
        p50, p99 = sample[len(sample) // 2], sample[int(len(sample) * 0.99)]
        print(f"  {name}: {len(sample)} admissions, p50 {p50:.0f} us, p99 {p99:.0f} us")
        return p50, p99

    print(
        f"admit(), typical pod, dry run, one thread, one due every 1 ms (latency from when it was due), "
        f"{CHURN_PER_S} pod updates/s in the churn phase:"
    )
    off = line("capacity off", latencies(plain))
    quiet = line("capacity on, quiet watch", latencies(aware))
    source.churn.set()
    time.sleep(1.0)
    views_before = watch.published
    busy = line("capacity on, under churn", latencies(aware))
    views = watch.published - views_before
    source.churn.clear()
    print(f"  views published under churn: {views} in 4 s")
    print(
        f"  ratios: p50 under churn / quiet {busy[0] / quiet[0]:.2f}, p99 {busy[1] / quiet[1]:.2f}; "
        f"p50 quiet / capacity off {quiet[0] / off[0]:.2f}"
    )


def main() -> None:
    data = yaml.safe_load(default_policy_text())
    data["capacity"] = {"mode": "prefer-free"}
    policy = compile_policy(data)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    source = FakeSource()
    watch = ClusterWatch(source, lambda: policy)
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

    read = CapacityRead(view, view.observed_at + 1.0)
    print(
        f"conditions: {NODES} GPU nodes ({sum(LAYOUT.values())} slices, {len(node(0)['metadata']['labels'])} labels each), "
        f"{PODS} GPU pods, default policy + capacity.mode prefer-free"
    )
    worst = 0.0
    p = typical_pod()
    # Every slice that fits a 7b pod taken by this server's own admissions (reservations):
    # the longest walk, and a note that names each full profile.
    taken = {slice_key(pool, profile): 10**6 for pool in policy.pools for profile in pool.profiles}
    for case, capacity in (
        ("a fitting slice free", read),
        ("every fitting profile full", CapacityRead(view, view.observed_at + 1.0, taken)),
    ):
        static, with_view, added = added_us(lambda: decide(p, policy), lambda: decide(p, policy, capacity))
        worst = max(worst, added)
        print(
            f"decide, typical pod (7b), {case} ({decide(p, policy, capacity).capacity}): static {static:.1f} us, "
            f"with view {with_view:.1f} us: +{added:.1f} us (limit 10 us; median of 25 interleaved rounds)"
        )
    print(
        f"watcher (tally + published view) memory: {held / 2**20:.1f} MiB (limit 64 MiB); "
        f"synced through the fake source in {synced:.1f} s"
    )
    print(f"one new view after one pod moved (snapshot + supply for the policy): {rebuild * 1000:.2f} ms")
    admissions(policy, watch, source)
    watch.stop()
    print(
        f"ratios: added decide time (worse case) {worst / 10:.2f} of the limit; memory {held / (64 * 2**20):.2f} of the limit"
    )


if __name__ == "__main__":
    main()
