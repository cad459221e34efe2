"""Properties over generated pods: the patch applies, the result is a valid Pod, a
second pass is a no-op, and nothing outside resources / affinity / tolerations /
priority / annotations changes."""

from __future__ import annotations

import base64
import copy
import json

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fixtures import review_for, validate_pod
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers
from webhook.core.decision import decide
from webhook.core.mutation import mutate_pod
from webhook.core.patch import diff
from webhook.core.policy import compile_policy, default_policy

A = "gpu-rightsizer.io/"
POLICIES = [
    default_policy(),
    compile_policy(
        {
            "pools": [
                {
                    "name": "a100",
                    "gpuModel": "A100-40GB",
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
                },
                {"name": "h200", "gpuModel": "H200-141GB"},
            ],
            "onOversize": "deny",
            "onInvalidAnnotation": "ignore",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "workloadClasses": {
                "inf": {"priorityClassName": "inf"},
                "train": {"priorityClassName": "train", "priority": 10, "preemptionPolicy": "Never"},
            },
            "defaultWorkloadClass": "inf",
            "overridePriorityClass": True,
        }
    ),
    # Inference sizing on both MIG strategies (README.md, "Sizing inference servers").
    compile_policy(
        {
            "pools": [
                {
                    "name": "h100-single",
                    "gpuModel": "H100-80GB",
                    "strategy": "single",
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "zone": "a"},
                },
                {"name": "a100-mixed", "gpuModel": "A100-80GB"},
            ],
            "estimate": {"activationMiB": 1024, "runtimeOverheadMiB": 1024, "gpuMemoryUtilization": 0.85},
            "nodeAffinity": [{"key": "nvidia.com/mig.capable", "operator": "In", "values": ["true"]}],
        }
    ),
]

names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
label_values = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
requirement = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["zone", "nvidia.com/mig.capable", "team"]),
        "operator": st.just("In"),
        "values": st.lists(label_values, min_size=1, max_size=2),
    }
)
term = st.fixed_dictionaries({"matchExpressions": st.lists(requirement, min_size=1, max_size=3)})
affinity = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "nodeAffinity": st.fixed_dictionaries(
                {
                    "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries(
                        {"nodeSelectorTerms": st.lists(term, min_size=1, max_size=3)}
                    )
                },
                optional={
                    "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
                        st.fixed_dictionaries({"weight": st.integers(1, 100), "preference": term}), max_size=2
                    )
                },
            )
        }
    ),
)
toleration = st.one_of(
    st.fixed_dictionaries(
        {"key": st.sampled_from(["nvidia.com/gpu", "dedicated"]), "operator": st.just("Exists")},
        optional={"effect": st.sampled_from(["NoSchedule", "NoExecute"])},
    ),
    st.fixed_dictionaries(
        {
            "key": st.just("dedicated"),
            "operator": st.just("Equal"),
            "value": label_values,
            "effect": st.just("NoSchedule"),
        }
    ),
)
gpu = st.sampled_from([None, "1", "1", "1", "2", "4"])
annotation_values = {
    A + "model-size": st.sampled_from(["7b", "13B", "1.5b", "350m", "70b", "34b", "560000000", "huge", "0"]),
    A + "precision": st.sampled_from(["fp16", "bf16", "fp32", "fp8", "int8", "int4", "fp64"]),
    A + "gpu-memory": st.sampled_from(["18Gi", "20G", "512Mi", "100Gi", "1e309", "-1", "x"]),
    A + "profile": st.sampled_from(["1g.10gb", "3g.40gb", "1g.5gb", "7g.141gb", "9g.9gb"]),
    A + "workload-class": st.sampled_from(["inference", "training", "inf", "train", "nope"]),
    A + "skip": st.sampled_from(["true", "false"]),
    A + "model": st.sampled_from(["llama-3.1-8b", "qwen2.5-72b", "gemma-2-2b", "Qwen/Qwen2.5-7B-Instruct", "gpt-9"]),
    A + "context-length": st.sampled_from(["8k", "128k", "4096", "0", "lots"]),
    A + "max-concurrency": st.sampled_from(["1", "4", "64", "0"]),
    A + "kv-cache-dtype": st.sampled_from(["auto", "fp8", "int4"]),
    A + "gpu-memory-utilization": st.sampled_from(["0.9", "0.5", "1", "1.5"]),
    A + "architecture": st.sampled_from(["layers=32,kv-heads=8,head-dim=128", "layers=2"]),
    "team": label_values,
}
annotations = st.dictionaries(st.sampled_from(sorted(annotation_values)), st.just(None), max_size=6).flatmap(
    lambda keys: st.fixed_dictionaries({k: annotation_values[k] for k in keys})
)


@st.composite
def container(draw, name):
    limits, requests = {"cpu": "1", "memory": "1Gi"}, {}
    count = draw(gpu)
    if count is not None:
        limits["nvidia.com/gpu"] = count
        if draw(st.booleans()):
            requests["nvidia.com/gpu"] = count  # as the API server defaults it
    resources = {"limits": limits}
    if requests:
        resources["requests"] = requests
    out = {"name": name, "image": "registry.example/app:1", "resources": resources}
    if draw(st.booleans()):
        out["env"] = [{"name": "E", "value": draw(label_values)}]
    return out


@st.composite
def pods(draw):
    container_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    n_init = draw(st.integers(0, len(container_names) - 1))
    init = [draw(container(n)) for n in container_names[:n_init]]
    for c in init:
        if draw(st.booleans()):
            c["restartPolicy"] = "Always"  # a sidecar
    spec = {"containers": [draw(container(n)) for n in container_names[n_init:]]}
    if init:
        spec["initContainers"] = init
    if (aff := draw(affinity)) is not None:
        spec["affinity"] = aff
    if tols := draw(st.lists(toleration, max_size=3)):
        spec["tolerations"] = tols
    if draw(st.booleans()):
        spec["nodeSelector"] = {"team": draw(label_values)}
    if draw(st.booleans()):
        spec["priorityClassName"] = draw(st.sampled_from(["mine", "inf"]))
    if draw(st.booleans()):
        spec["priority"] = 0
        spec["preemptionPolicy"] = "PreemptLowerPriority"
    metadata = {"name": draw(names), "namespace": "ml", "labels": {"app": "x"}}
    if ann := draw(annotations):
        metadata["annotations"] = ann
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


OWNED_SPEC_FIELDS = {"affinity", "tolerations", "priorityClassName", "priority", "preemptionPolicy"}


def without_owned_fields(pod: dict) -> dict:
    """The pod minus what the webhook may change."""
    pod = copy.deepcopy(pod)
    pod["metadata"].pop("annotations", None)
    for name in OWNED_SPEC_FIELDS:
        pod["spec"].pop(name, None)
    for field in ("containers", "initContainers"):
        for c in pod["spec"].get(field, []):
            c.pop("resources", None)
    return pod


def patch_of(response: dict) -> list:
    return json.loads(base64.b64decode(response["patch"])) if "patch" in response else []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=pods(), which=st.sampled_from(range(len(POLICIES))))
def test_patch_applies_gives_a_valid_pod_and_a_second_pass_is_a_no_op(pod, which):
    policy = POLICIES[which]
    original = copy.deepcopy(pod)
    response = admit(review_for(pod), PlainAnswers(policy)).response
    assert pod == original, "admit must not modify its input"
    if not response["allowed"]:
        assert response["status"]["code"] == 400
        return
    patch = patch_of(response)
    mutated = jsonpatch.apply_patch(pod, patch)
    validate_pod(mutated)
    assert without_owned_fields(mutated) == without_owned_fields(pod)
    assert "patch" not in admit(review_for(mutated), PlainAnswers(policy)).response
    # Our identity-skipping diff says the same as a full structural diff.
    assert mutated == mutate_pod(pod, decide(pod, policy), policy)
    assert jsonpatch.apply_patch(pod, jsonpatch.make_patch(pod, mutated).patch) == mutated


@settings(max_examples=200, deadline=None)
@given(
    a=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=3),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet="a/~b", max_size=3), inner, max_size=3)
        ),
    ),
    b=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=3),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet="a/~b", max_size=3), inner, max_size=3)
        ),
    ),
)
def test_diff_is_a_correct_json_patch_for_any_documents(a, b):
    doc = {"root": a}
    target = {"root": b}
    assert jsonpatch.apply_patch(doc, diff(doc, target)) == target
