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
    """Every workload of the reference mix is sized from its vLLM command line (it has no
    gpu-rightsizer annotation), through the webhook's engine-flag path."""
    demand = demand_from_manifests([str(EXAMPLES / "reference-mix")], POLICY)
    sizes = {w.name: (w.replicas, dict(w.per_replica), w.action) for w in demand.workloads}
    assert sizes == {
        "router-qwen-1.5b": (15, {"1g.10gb": 1}, "rewrite"),
        "assistant-llama-3b": (20, {"1g.20gb": 1}, "rewrite"),
        "chat-llama-8b-fp8": (25, {"1g.20gb": 1}, "rewrite"),
        "rag-qwen-7b": (10, {"3g.40gb": 1}, "rewrite"),
        "chat-qwen-14b-awq": (10, {"1g.20gb": 1}, "rewrite"),
        "agent-gpt-oss-20b": (5, {"1g.20gb": 1}, "rewrite"),
        "reasoning-qwen-32b-awq": (10, {"3g.40gb": 1}, "rewrite"),
        "chat-llama-70b-tp2": (5, {WHOLE_GPU: 2}, "unchanged"),
    }
    assert len(demand.units) == 15 + 20 + 25 + 10 + 10 + 5 + 10 + 5 * 2
    for w in demand.workloads:
        if w.action == "rewrite":
            assert 'read from the vLLM command of container "vllm" (vllm serve ' in w.message, w.name
    for _, doc in load_documents(str(EXAMPLES / "reference-mix" / "workloads.yaml")):
        assert not doc["spec"]["template"]["metadata"].get("annotations"), "sized by its flags alone"


def _mix_pod(name):
    for _, doc in load_documents(str(EXAMPLES / "reference-mix" / "workloads.yaml")):
        if doc["metadata"]["name"] == name:
            return pod_of(doc)[0]
    raise AssertionError(name)


GIB = 1024**3
MIB = 1024**2


def test_reference_mix_arithmetic_written_out():
    """Two workloads of the mix, by hand from the architecture table's rows
    (webhook/core/data/architectures.yaml), the default policy and the H100's real usable
    memory (nvidia-smi mig -lgip: 1g.10gb 9984 MiB, 1g.20gb 20096 MiB, 3g.40gb 40448 MiB)."""
    from webhook.core.decision import decide

    fixed = (1536 + 768) * MIB  # activationMiB + runtimeOverheadMiB
    # vllm serve RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8 --max-model-len 16384 --kv-cache-dtype fp8
    # llama-3.1-8b: 8,030,261,248 params, 32 layers, 8 KV heads, head dim 128.
    weights = 8_030_261_248 * 1  # FP8 checkpoint: 1 byte a weight
    kv = 2 * 32 * 8 * 128 * 1 * 16384  # K and V x layers x heads x dim x 1 byte (fp8 cache) x tokens
    assert kv == 1 * GIB
    need = weights + kv + fixed
    assert need == 11_519_922_176  # 10.73 GiB
    assert need > 0.9 * 9984 * MIB  # not within --gpu-memory-utilization 0.9 of a 1g.10gb
    assert need <= 0.9 * 20096 * MIB  # within 0.9 of a 1g.20gb (17.66 GiB)
    decision = decide(_mix_pod("chat-llama-8b-fp8"), POLICY)
    assert decision.need.bytes == need and decision.profile.name == "1g.20gb"
    assert "weights 7.48 GiB (fp8: FP8 checkpoint) + KV 1.00 GiB (16384 x 1) + 2.25 GiB -> 10.7 GiB" in decision.message

    # vllm serve Qwen/Qwen2.5-7B-Instruct --dtype bfloat16 --max-model-len 32768
    # qwen2.5-7b: 7,615,616,512 params, 28 layers, 4 KV heads, head dim 128.
    weights = 7_615_616_512 * 2  # bf16
    kv = 2 * 28 * 4 * 128 * 2 * 32768  # the cache in the model's dtype (kv-cache-dtype auto)
    need = weights + kv + fixed
    assert need == 19_526_200_320  # 18.19 GiB: over 0.9 x 20096 MiB (17.66 GiB), so not a 1g.20gb/2g.20gb
    assert 0.9 * 20096 * MIB < need <= 0.9 * 40448 * MIB
    decision = decide(_mix_pod("rag-qwen-7b"), POLICY)
    assert decision.need.bytes == need and decision.profile.name == "3g.40gb"


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
