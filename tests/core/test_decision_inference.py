"""The inference estimate inside webhook.core.decision: precedence, validation, messages."""

from __future__ import annotations

import pytest

from webhook.core import annotations as ann
from webhook.core.decision import decide, estimate_need
from webhook.core.policy import default_policy, parse_policy_yaml

POLICY = default_policy()
SERVING = {ann.MODEL: "llama-3.1-8b", ann.PRECISION: "bf16", ann.CONTEXT_LENGTH: "8k", ann.MAX_CONCURRENCY: "4"}


def pod(annotations: dict) -> dict:
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }


def test_pods_without_inference_annotations_keep_the_core_estimate():
    # 7e9 x 2 B x 1.2 = 16800000000 B = 15.65 GiB, compared with the whole slice (utilization 1)
    need = estimate_need({ann.MODEL_SIZE: "7b"}, POLICY)
    assert need.bytes == 16_800_000_000 and need.utilization == 1
    assert need.explanation == "7B params x 2 B (fp16) x 1.2 = 15.65 GiB"
    decision = decide(pod({ann.MODEL_SIZE: "7b"}), POLICY)
    assert decision.message.endswith("7B params x 2 B (fp16) x 1.2 = 15.65 GiB fits 1g.20gb (19.50 GiB usable)")


def test_model_alone_gives_params_to_the_core_estimate():
    # 8030261248 x 2 B x 1.2 = 19272626995.2 -> 19272626996 B
    need = estimate_need({ann.MODEL: "llama-3.1-8b"}, POLICY)
    assert need.bytes == 19272626996 and need.utilization == 1
    assert need == estimate_need({ann.MODEL_SIZE: "8030261248"}, POLICY)


def test_model_size_beats_model_for_the_core_estimate():
    assert estimate_need({ann.MODEL: "llama-3.1-70b", ann.MODEL_SIZE: "7b"}, POLICY).bytes == 16_800_000_000


def test_gpu_memory_beats_the_inference_estimate_but_everything_is_validated():
    need = estimate_need({**SERVING, ann.GPU_MEMORY: "10Gi"}, POLICY)
    assert need.bytes == 10 * 2**30 and need.utilization == 1
    for name, bad in [
        (ann.CONTEXT_LENGTH, "8kk"),
        (ann.MAX_CONCURRENCY, "0"),
        (ann.KV_CACHE_DTYPE, "int8"),
        (ann.GPU_MEMORY_UTILIZATION, "1.5"),
        (ann.ARCHITECTURE, "layers=1"),
        (ann.MODEL, "nope"),
    ]:
        decision = decide(pod({**SERVING, ann.GPU_MEMORY: "10Gi", name: bad}), POLICY)
        assert decision.action == "deny", name
        assert name in decision.message and "expected" in decision.message


def test_inference_annotations_without_context_length_are_validated_too():
    decision = decide(pod({ann.MODEL: "llama-3.1-8b", ann.MAX_CONCURRENCY: "many"}), POLICY)
    assert decision.action == "deny" and ann.MAX_CONCURRENCY in decision.message


def test_context_length_needs_an_architecture_and_params():
    for given in (
        {ann.CONTEXT_LENGTH: "8k", ann.MODEL_SIZE: "7b"},
        {ann.CONTEXT_LENGTH: "8k", ann.ARCHITECTURE: "layers=32,kv-heads=8,head-dim=128"},
    ):
        decision = decide(pod(given), POLICY)
        assert decision.action == "deny"
        assert ann.CONTEXT_LENGTH in decision.message and ann.ARCHITECTURE in decision.message


def test_invalid_annotation_with_on_invalid_ignore_admits_unchanged():
    policy = parse_policy_yaml("pools: [{name: h, gpuModel: H100-80GB}]\nonInvalidAnnotation: ignore\n")
    decision = decide(pod({**SERVING, ann.CONTEXT_LENGTH: "lots"}), policy)
    assert decision.action == "unchanged" and ann.CONTEXT_LENGTH in decision.message


def test_oversize_inference_shows_the_comparison():
    # 70553706496 x 2 = 131.42 GiB of weights: more than 0.9 x 79.00 GiB of 7g.80gb
    decision = decide(pod({ann.MODEL: "llama-3.1-70b", ann.CONTEXT_LENGTH: "8k"}), POLICY)
    assert decision.action == "whole-gpu"
    assert "> 0.9 x 79.00 GiB of 7g.80gb: exceeds the largest MIG profile" in decision.message
    deny = parse_policy_yaml("pools: [{name: h, gpuModel: H100-80GB}]\nonOversize: deny\n")
    assert decide(pod({ann.MODEL: "llama-3.1-70b", ann.CONTEXT_LENGTH: "8k"}), deny).action == "deny"


def test_the_issue_example_is_not_put_on_a_20gb_slice_of_any_pool():
    policy = parse_policy_yaml(
        "pools:\n"
        "  - {name: small, gpuModel: H100-80GB, profiles: [1g.20gb, 2g.20gb]}\n"
        "  - {name: big, gpuModel: H100-80GB, profiles: [3g.40gb]}\n"
    )
    decision = decide(pod(SERVING), policy)
    assert (decision.pool.name, decision.profile.name) == ("big", "3g.40gb")


@pytest.mark.parametrize("hf_id", ["meta-llama/Llama-3.1-8B-Instruct", "LLAMA-3.1-8B"])
def test_model_by_hugging_face_id(hf_id):
    assert estimate_need({**SERVING, ann.MODEL: hf_id}, POLICY) == estimate_need(SERVING, POLICY)


def test_serving_settings_without_context_length_say_the_estimate_is_weights_only():
    need = estimate_need({ann.MODEL: "llama-3.1-8b", ann.MAX_CONCURRENCY: "4"}, POLICY)
    assert need.bytes == 19272626996
    assert (
        need.explanation
        == "8.03B params x 2 B (fp16) x 1.2 = 17.95 GiB (weights only: no gpu-rightsizer.io/context-length)"
    )
    # model alone is the documented way to use the table's params: no note
    assert "weights only" not in estimate_need({ann.MODEL: "llama-3.1-8b"}, POLICY).explanation
