"""Pools on the device plugin's `single` MIG strategy: the request stays nvidia.com/gpu
and GPU feature discovery's product label pins the profile. Driven through the real
admission path with an AdmissionReview captured from kube-apiserver v1.36.3."""

from __future__ import annotations

import copy

import jsonpatch
import kubernetes_validate
import pytest

from tests.support.fixtures import captured_review
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers
from webhook.core import annotations as ann
from webhook.core.errors import PolicyError
from webhook.core.policy import parse_policy_yaml

K8S_VERSION = "1.36.0"

SINGLE = """
pools:
  - name: h100-single
    gpuModel: H100-80GB
    strategy: single
    nodeSelector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3, topology.kubernetes.io/zone: z1}
nodeAffinity:
  - {key: nvidia.com/mig.capable, operator: In, values: ["true"]}
tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
workloadClasses:
  inference: {priorityClassName: gpu-rightsizer-inference, priority: 100000, preemptionPolicy: PreemptLowerPriority}
defaultWorkloadClass: inference
"""
SERVING = {ann.MODEL: "llama-3.1-8b", ann.PRECISION: "bf16", ann.CONTEXT_LENGTH: "8k", ann.MAX_CONCURRENCY: "4"}


def review_with(annotations: dict) -> dict:
    review = copy.deepcopy(captured_review("pod-create"))
    pod = review["request"]["object"]
    pod["metadata"]["annotations"] = {
        **{k: v for k, v in pod["metadata"]["annotations"].items() if not k.startswith(ann.PREFIX)},
        **annotations,
    }
    return review


def apply(review: dict, policy) -> tuple[dict, object]:
    outcome = admit(review, PlainAnswers(policy))
    pod = review["request"]["object"]
    patch = [dict(op) for op in outcome.patch]
    return jsonpatch.apply_patch(pod, patch), outcome


def product_terms(pod: dict) -> list[list[dict]]:
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    return [[e for e in t["matchExpressions"] if e["key"] == "nvidia.com/gpu.product"] for t in terms]


def test_single_strategy_keeps_the_resource_and_pins_the_product_label():
    policy = parse_policy_yaml(SINGLE)
    review = review_with(SERVING)
    mutated, outcome = apply(review, policy)
    assert outcome.result == "mutated"
    for part in ("limits", "requests"):
        amounts = mutated["spec"]["containers"][0]["resources"][part]
        assert (
            amounts["nvidia.com/gpu"]
            == review["request"]["object"]["spec"]["containers"][0]["resources"][part]["nvidia.com/gpu"]
        )
        assert not any(k.startswith("nvidia.com/mig-") for k in amounts)
    # exactly one product requirement per term: the -MIG- value, never the plain product
    assert product_terms(mutated) == [
        [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3-MIG-3g.40gb"]}]
    ]
    expressions = mutated["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"]
    assert {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z1"]} in expressions
    assert {"key": "nvidia.com/mig.capable", "operator": "In", "values": ["true"]} in expressions
    assert mutated["spec"]["priorityClassName"] == "gpu-rightsizer-inference"
    assert mutated["metadata"]["annotations"][ann.ASSIGNED_PROFILE] == "3g.40gb"
    assert mutated["metadata"]["annotations"][ann.DECISION].startswith(
        "nvidia.com/gpu: 1 on nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3-MIG-3g.40gb on pool h100-single"
    )
    assert outcome.response["warnings"][0].endswith("-> 21.2 GiB <= 0.9 x 39.25 GiB of 3g.40gb")
    kubernetes_validate.validate(mutated, K8S_VERSION, strict=True)


def test_second_pass_over_the_mutated_pod_is_a_no_op():
    policy = parse_policy_yaml(SINGLE)
    review = review_with(SERVING)
    mutated, _ = apply(review, policy)
    again = copy.deepcopy(review)
    again["request"]["object"] = mutated
    again["request"]["uid"] = "second-call"
    outcome = admit(again, PlainAnswers(policy))
    assert outcome.patch == ()
    assert outcome.decision.action == "rewrite"  # it still asks for nvidia.com/gpu: 1
    assert outcome.result == "unchanged"


def test_user_affinity_terms_each_get_the_pin_and_keep_their_own_choices():
    policy = parse_policy_yaml(SINGLE)
    review = review_with(SERVING)
    review["request"]["object"]["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "rack", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "rack", "operator": "In", "values": ["b"]}]},
                ]
            }
        }
    }
    mutated, _ = apply(review, policy)
    assert len(product_terms(mutated)) == 2
    assert all(
        t == [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3-MIG-3g.40gb"]}]
        for t in product_terms(mutated)
    )
    kubernetes_validate.validate(mutated, K8S_VERSION, strict=True)
    again = copy.deepcopy(review)
    again["request"]["object"] = mutated
    assert admit(again, PlainAnswers(policy)).patch == ()


def test_product_defaults_to_the_models_first_alias_without_a_selector():
    policy = parse_policy_yaml("pools: [{name: a100, gpuModel: A100-40GB, strategy: single}]\n")
    mutated, _ = apply(review_with({ann.MODEL_SIZE: "7b"}), policy)
    # 7e9 x 2 x 1.2 = 15.65 GiB -> 3g.20gb (19.50 GiB) on an A100 40GB
    assert product_terms(mutated) == [
        [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-40GB-MIG-3g.20gb"]}]
    ]


def test_mixed_strategy_is_unchanged():
    policy = parse_policy_yaml(SINGLE.replace("strategy: single", "strategy: mixed"))
    mutated, _ = apply(review_with(SERVING), policy)
    limits = mutated["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/mig-3g.40gb"] == "1" and "nvidia.com/gpu" not in limits
    assert product_terms(mutated) == [
        [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}]
    ]
    kubernetes_validate.validate(mutated, K8S_VERSION, strict=True)


def test_unknown_strategy_is_a_policy_error():
    with pytest.raises(PolicyError, match=r"^pools\[0\]\.strategy"):
        parse_policy_yaml("pools: [{name: a, gpuModel: H100-80GB, strategy: none}]\n")
