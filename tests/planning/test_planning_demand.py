import json
from pathlib import Path

import jsonpatch
import pytest

from webhook.admission.answer import pod_patch
from webhook.core.policy import default_policy
from webhook.core.workloads import pod_of
from webhook.planning.demand import DemandError, demand_from_manifests, load_documents
from webhook.planning.geometry import WHOLE_GPU

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLICY = default_policy()


def _pod(annotations=None, gpus=1, name="p", kind="Pod", **spec_extra):
    pod_spec = {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}
    meta = {"name": name, "annotations": annotations or {}}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}
    template = {"metadata": {"annotations": annotations or {}}, "spec": pod_spec}
    if kind == "CronJob":
        return {
            "kind": kind,
            "metadata": {"name": name},
            "spec": {"jobTemplate": {"spec": {**spec_extra, "template": template}}},
        }
    return {"kind": kind, "metadata": {"name": name}, "spec": {**spec_extra, "template": template}}


def _write(tmp_path, docs, name="m.yaml", as_json=False):
    import yaml

    path = tmp_path / name
    path.write_text(json.dumps(docs) if as_json else yaml.safe_dump_all(docs))
    return str(path)


def test_every_example_pod_gets_what_the_webhook_gives_it():
    """The planner's resource for each pod equals the resource in the webhook's mutated pod."""
    demand = demand_from_manifests([str(EXAMPLES)], POLICY)
    assert demand.workloads
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for source, doc in load_documents(str(path)):
            workload = next(w for w in demand.workloads if w.source == source)
            pod, _ = pod_of(doc)
            _, patch = pod_patch(pod, POLICY)
            mutated = jsonpatch.apply_patch(pod, patch)
            limits: dict[str, int] = {}
            for c in mutated["spec"]["containers"]:
                for key, value in c["resources"]["limits"].items():
                    if not key.startswith("nvidia.com/"):
                        continue
                    resource = WHOLE_GPU if key == "nvidia.com/gpu" else key.removeprefix("nvidia.com/mig-")
                    limits[resource] = limits.get(resource, 0) + int(value)
            assert dict(workload.per_replica) == limits, workload.label


def test_reference_mix_sizes():
    demand = demand_from_manifests([str(EXAMPLES / "reference-mix")], POLICY)
    sizes = {w.name: (w.replicas, dict(w.per_replica), w.action) for w in demand.workloads}
    assert sizes == {
        "llm-7b-fp16": (30, {"1g.20gb": 1}, "rewrite"),
        "llm-3b-fp16": (35, {"1g.10gb": 1}, "rewrite"),
        "llm-34b-int4": (10, {"1g.20gb": 1}, "rewrite"),
        "llm-13b-fp16": (20, {"3g.40gb": 1}, "rewrite"),
        "llm-70b-fp16": (5, {WHOLE_GPU: 2}, "unchanged"),
    }
    assert len(demand.units) == 30 + 35 + 10 + 20 + 10


def test_replicas_parallelism_and_kinds(tmp_path):
    ann = {"gpu-rightsizer.io/model-size": "3b"}
    docs = [
        _pod(ann, kind="Deployment", name="d", replicas=3),
        _pod(ann, kind="StatefulSet", name="s", replicas=2),
        _pod(ann, kind="ReplicaSet", name="r"),
        _pod(ann, kind="Job", name="j", parallelism=4, completions=2),
        _pod(ann, kind="CronJob", name="cj", parallelism=3),
        _pod(ann, name="p"),
        {"kind": "List", "items": [_pod(ann, name="in-list")]},
    ]
    demand = demand_from_manifests([_write(tmp_path, docs)], POLICY)
    replicas = {w.name: w.replicas for w in demand.workloads}
    assert replicas == {"d": 3, "s": 2, "r": 1, "j": 2, "cj": 3, "p": 1, "in-list": 1}
    assert demand.counts() == {"h100-80": {"1g.10gb": 13}}


def test_json_and_directories(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub", [_pod({"gpu-rightsizer.io/gpu-memory": "30Gi"})], "a.json", as_json=True)
    _write(tmp_path, [_pod({"gpu-rightsizer.io/profile": "2g.20gb"}, name="q")], "b.yml")
    (tmp_path / "notes.txt").write_text("not a manifest")
    demand = demand_from_manifests([str(tmp_path)], POLICY)
    assert demand.counts() == {"h100-80": {"3g.40gb": 1, "2g.20gb": 1}}


def test_what_the_webhook_leaves_alone_or_refuses_is_reported_with_its_message(tmp_path):
    docs = [
        _pod({"gpu-rightsizer.io/model-size": "seven"}, name="bad"),
        _pod({}, name="unsized"),
        _pod({"gpu-rightsizer.io/skip": "true", "gpu-rightsizer.io/model-size": "7b"}, name="skipped"),
        _pod({"gpu-rightsizer.io/model-size": "400b"}, name="huge"),
        {"kind": "Pod", "metadata": {"name": "cpu"}, "spec": {"containers": [{"name": "c"}]}},
        {"kind": "ConfigMap", "metadata": {"name": "cm"}},
    ]
    demand = demand_from_manifests([_write(tmp_path, docs)], POLICY)
    by = {w.name: w for w in demand.workloads}
    assert by["bad"].action == "deny" and "gpu-rightsizer.io/model-size" in by["bad"].message and by["bad"].pool is None
    assert by["unsized"].action == "unchanged" and "no sizing annotation" in by["unsized"].message
    assert dict(by["unsized"].per_replica) == {WHOLE_GPU: 1}
    assert dict(by["skipped"].per_replica) == {WHOLE_GPU: 1}
    assert by["huge"].action == "whole-gpu" and "exceeds the largest MIG profile" in by["huge"].message
    assert by["cpu"].action == "ignore" and not by["cpu"].per_replica
    assert by["cm"].action == "invalid" and "ConfigMap" in by["cm"].message
    assert demand.counts() == {"h100-80": {WHOLE_GPU: 3}}
    # the very message the webhook gives
    from webhook.core.decision import decide

    for name, doc in (("bad", docs[0]), ("unsized", docs[1]), ("huge", docs[3])):
        assert by[name].message == decide(doc, POLICY).message


def test_unreadable_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(DemandError, match="bad.yaml is neither valid YAML nor JSON"):
        demand_from_manifests([str(bad)], POLICY)
    with pytest.raises(DemandError, match="no such file"):
        demand_from_manifests([str(tmp_path / "missing.yaml")], POLICY)


def test_bad_replicas_names_the_field(tmp_path):
    demand = demand_from_manifests(
        [_write(tmp_path, [_pod({"gpu-rightsizer.io/model-size": "3b"}, kind="Deployment", replicas="3")])], POLICY
    )
    assert demand.workloads[0].action == "invalid" and "Deployment.spec.replicas" in demand.workloads[0].message


def test_two_pools_whole_gpu_pods_follow_their_node_selector(tmp_path):
    from webhook.core.policy import compile_policy

    policy = compile_policy(
        {
            "pools": [
                {
                    "name": "h100",
                    "gpuModel": "H100-80GB",
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                },
                {"name": "a30", "gpuModel": "A30-24GB", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A30"}},
            ]
        }
    )
    on_a30 = _pod({}, name="a30-whole")
    on_a30["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-A30"}
    docs = [on_a30, _pod({}, name="anywhere"), _pod({"gpu-rightsizer.io/gpu-memory": "5Gi"}, name="small")]
    demand = demand_from_manifests([_write(tmp_path, docs)], policy)
    # the decision picks the pool whose profile wastes least: A30 1g.6gb for 5 GiB
    assert demand.counts() == {"a30": {WHOLE_GPU: 1, "1g.6gb": 1}, "h100": {WHOLE_GPU: 1}}
