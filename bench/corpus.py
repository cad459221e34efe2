"""The benchmark corpus: AdmissionReviews of realistic pods, by kind.

The base is the reviews a real kube-apiserver v1.36.3 sent (../shared/admission-reviews,
or $GPU_RIGHTSIZER_SHARED); the variants are generated from the captured pod so they
keep everything the API server adds (defaulted requests, managedFields, the projected
service-account volume, default tolerations, spec.priority).
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    # ../shared beside the clone, else the copies the tests keep (tests/fixtures/).
    candidates = [os.environ.get("GPU_RIGHTSIZER_SHARED"), ROOT.parent / "shared", ROOT / "tests" / "fixtures"]
    for c in candidates:
        if c and (Path(c) / "admission-reviews").is_dir():
            return Path(c)
    raise SystemExit("bench: cannot find shared/admission-reviews; set GPU_RIGHTSIZER_SHARED")


def captured_reviews() -> dict[str, dict]:
    """file stem -> AdmissionReview, as captured."""
    out = {}
    for path in sorted((shared_dir() / "admission-reviews").glob("*.json")):
        out[path.stem] = json.loads(path.read_text())["review"]
    return out


def _sidecar(name: str, image: str) -> dict:
    return {
        "name": name,
        "image": image,
        "resources": {"limits": {"cpu": "100m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _env(n: int, value_len: int) -> list[dict]:
    return [{"name": f"SETTING_{i:04d}", "value": f"v{i:04d}-".ljust(value_len, "x")} for i in range(n)]


def _volumes(n: int) -> tuple[list[dict], list[dict]]:
    vols = [{"name": f"cfg-{i}", "configMap": {"name": f"config-{i}", "defaultMode": 420}} for i in range(n)]
    mounts = [{"name": f"cfg-{i}", "mountPath": f"/etc/config/{i}", "readOnly": True} for i in range(n)]
    return vols, mounts


def _with_pod(review: dict, change) -> dict:
    review = copy.deepcopy(review)
    review["request"]["uid"] = str(uuid.uuid4())
    change(review["request"]["object"])
    return review


def _multi(pod: dict) -> None:
    spec = pod["spec"]
    spec["initContainers"] = [_sidecar("fetch-weights", "busybox:1.36"), _sidecar("warmup", "busybox:1.36")]
    spec["containers"] = [
        _sidecar("istio-proxy", "istio/proxyv2:1.22.0"),
        spec["containers"][0],
        _sidecar("metrics-exporter", "prom/node-exporter:v1.8.0"),
    ]


def _affinity(pod: dict) -> None:
    term = lambda zone: {  # noqa: E731
        "matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p5.48xlarge", "a3-highgpu-8g"]},
        ]
    }
    pod["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term(z) for z in ("a", "b", "c")]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {"matchExpressions": [{"key": "spot", "operator": "NotIn", "values": ["true"]}]},
                }
            ],
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "llm"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        },
    }


def _tolerations(pod: dict) -> None:
    pod["spec"]["tolerations"] += [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "team", "operator": "Equal", "value": "research", "effect": "PreferNoSchedule"},
        {"key": "nvidia.com/gpu.product", "operator": "Exists", "effect": "NoSchedule"},
    ]


def _bulk(target_bytes: int):
    def change(pod: dict) -> None:
        container = pod["spec"]["containers"][0]
        vols, mounts = _volumes(20)
        pod["spec"]["volumes"] += vols
        container["volumeMounts"] += mounts
        container["env"] = []
        while len(json.dumps(pod)) < target_bytes:
            container["env"] += _env(50, 60)
            for i, e in enumerate(container["env"]):
                e["name"] = f"SETTING_{i:05d}"

    return change


def _no_gpu(pod: dict) -> None:
    for c in pod["spec"]["containers"]:
        for part in ("limits", "requests"):
            c["resources"][part].pop("nvidia.com/gpu", None)
    pod["metadata"]["annotations"].pop("gpu-rightsizer.io/model-size", None)


def corpus() -> dict[str, dict]:
    """kind -> AdmissionReview. 'single' is the typical pod (the captured pod create)."""
    captured = captured_reviews()
    base = captured["pod-create"]
    kinds = {
        "single": base,
        "deployment-pod": captured["deployment-pod-create"],
        "reinvoked": captured["pod-create-reinvoked"],
        "no-gpu": _with_pod(base, _no_gpu),
        "multi-init-sidecars": _with_pod(base, _multi),
        "affinity-3-terms": _with_pod(base, _affinity),
        "tolerations-6": _with_pod(base, _tolerations),
        "env-volumes-20k": _with_pod(base, _bulk(20_000)),
        "pod-200k": _with_pod(base, _bulk(205_000)),
    }
    return kinds


def distinct_bodies(review: dict, count: int) -> list[bytes]:
    """``count`` reviews of the same pod, each made distinct by one label (which the
    decision does not read): pods no decision memo has seen, each decided in full.
    ``count`` over the memo's size (webhook/admission/memo.py) keeps a cycle of them missing."""
    out = []
    for i in range(count):
        variant = copy.deepcopy(review)
        variant["request"]["uid"] = str(uuid.UUID(int=i))
        variant["request"]["object"]["metadata"].setdefault("labels", {})["bench/variant"] = str(i)
        out.append(body_of(variant))
    return out


def body_of(review: dict) -> bytes:
    return json.dumps(review).encode()
