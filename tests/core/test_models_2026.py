"""The rows added for issue 19, the attention kinds they use, the fp8 cache fix, quantized
checkpoint names, and the policy's own `architectures:` rows.

CITED holds config.json values typed from the sources webhook/core/data/architectures.yaml
names (not from the table); the parameter count is recomputed from the shapes and must
equal the table's (which is the checkpoint's published total).
"""

from __future__ import annotations

import pytest

from webhook.core import annotations as ann
from webhook.core.decision import decide, estimate_need
from webhook.core.inference import builtin_architectures, parse_model
from webhook.core.policy import PolicyError, default_policy, parse_policy_yaml

POLICY = default_policy()
TABLE = builtin_architectures()
GIB = 2**30
MIB = 2**20

# vocab, hidden, intermediate, layers, heads, kv heads, head_dim, tied, q/k norms, norms per layer
CITED = {
    "llama-3.3-70b": dict(vocab=128256, hidden=8192, inter=28672, layers=80, heads=64, kv=8, hd=128, tied=False),
    "qwen3-4b": dict(vocab=151936, hidden=2560, inter=9728, layers=36, heads=32, kv=8, hd=128, tied=True, qk_norm=True),
    "qwen3-8b": dict(
        vocab=151936, hidden=4096, inter=12288, layers=36, heads=32, kv=8, hd=128, tied=False, qk_norm=True
    ),
    "qwen3-14b": dict(
        vocab=151936, hidden=5120, inter=17408, layers=40, heads=40, kv=8, hd=128, tied=False, qk_norm=True
    ),
    "qwen3-32b": dict(
        vocab=151936, hidden=5120, inter=25600, layers=64, heads=64, kv=8, hd=128, tied=False, qk_norm=True
    ),
    "mistral-small-3": dict(vocab=131072, hidden=5120, inter=32768, layers=40, heads=32, kv=8, hd=128, tied=False),
    "phi-4": dict(vocab=100352, hidden=5120, inter=17920, layers=40, heads=40, kv=10, hd=128, tied=False),
    "gemma-3-1b": dict(
        vocab=262144, hidden=1152, inter=6912, layers=26, heads=4, kv=1, hd=256, tied=True, qk_norm=True, norms=4
    ),
    "deepseek-r1-distill-qwen-1.5b": dict(
        vocab=151936, hidden=1536, inter=8960, layers=28, heads=12, kv=2, hd=128, tied=False, qkv_bias=True
    ),
}


def dense_params(c: dict) -> int:
    h, hd = c["hidden"], c["hd"]
    attention = h * c["heads"] * hd + 2 * h * c["kv"] * hd + c["heads"] * hd * h
    attention += 2 * hd if c.get("qk_norm") else 0
    attention += (c["heads"] * hd + 2 * c["kv"] * hd) if c.get("qkv_bias") else 0
    per_layer = attention + 3 * h * c["inter"] + c.get("norms", 2) * h
    return c["vocab"] * h * (1 if c["tied"] else 2) + c["layers"] * per_layer + h


@pytest.mark.parametrize("key", sorted(CITED))
def test_dense_rows_match_their_config(key):
    row, c = TABLE.models[key], CITED[key]
    assert (row.layers, row.kv_heads, row.head_dim, row.hidden_size, row.attention_heads) == (
        c["layers"],
        c["kv"],
        c["hd"],
        c["hidden"],
        c["heads"],
    )
    assert row.params == dense_params(c)


def test_moe_mla_and_multimodal_rows_recomputed():
    # Qwen3-30B-A3B: 128 experts of 3 x 2048 x 768, router 2048 x 128, q/k norms.
    h = 2048
    attention = h * 32 * 128 + 2 * h * 4 * 128 + 32 * 128 * h + 256
    assert (
        TABLE.models["qwen3-30b-a3b"].params
        == 151936 * h * 2 + 48 * (attention + 128 * 3 * h * 768 + h * 128 + 2 * h) + h
    )
    # gpt-oss: biased attention with sinks, biased experts (gate_up 2 x 2880), router bias.
    for key, layers, experts, weight_bytes in (
        ("gpt-oss-20b", 24, 32, 13761264768),
        ("gpt-oss-120b", 36, 128, 65248815744),
    ):
        h, e = 2880, experts
        attention = h * 4096 + 4096 + 2 * (h * 512 + 512) + 4096 * h + h + 64
        expert_weights = e * (h * 2 * 2880 + 2880 * h)
        per_layer = attention + (h * e + e) + expert_weights + e * (2 * 2880 + h) + 2 * h
        total = 201088 * h * 2 + layers * per_layer + h
        row = TABLE.models[key]
        assert row.params == total
        # MXFP4: 4-bit values + one 8-bit scale per 32 = 17/32 B per expert weight; rest bf16.
        assert (
            row.weight_bytes
            == layers * expert_weights * 17 // 32 + (total - layers * expert_weights) * 2
            == weight_bytes
        )
    # DeepSeek-V2-Lite: MLA without q_lora, 1 dense layer, 64 routed + 2 shared experts.
    h, heads = 2048, 16
    mla = h * heads * 192 + h * 576 + 512 + 512 * heads * 256 + heads * 128 * h
    moe = 66 * 3 * h * 1408 + h * 64
    assert TABLE.models["deepseek-v2-lite"].params == 102400 * h * 2 + 27 * (mla + 2 * h) + 3 * h * 10944 + 26 * moe + h
    # Gemma 3 27B: text (4 norms, q/k norms, head_dim 128, tied) + SigLIP tower + projector.
    text = dense_params(
        dict(
            vocab=262208, hidden=5376, inter=21504, layers=62, heads=32, kv=16, hd=128, tied=True, qk_norm=True, norms=4
        )
    )
    siglip = (
        (3 * 14 * 14 * 1152 + 1152)
        + 4096 * 1152
        + 27 * (4 * (1152 * 1152 + 1152) + 2 * 1152 * 4304 + 4304 + 1152 + 4 * 1152)
        + 2 * 1152
    )
    assert TABLE.models["gemma-3-27b"].params == text + siglip + 1152 * 5376 + 1152 == 27432406640


def test_every_row_names_its_source_and_maximum_context():
    for key, row in TABLE.models.items():
        assert row.config.endswith("/config.json"), key
        assert row.max_context, key


def test_alias_contexts():
    assert TABLE.resolve("Qwen/Qwen2.5-7B").max_context == 131072
    assert TABLE.resolve("Qwen/Qwen2.5-7B-Instruct").max_context == 32768
    assert TABLE.resolve("microsoft/Phi-3-mini-128k-instruct").max_context == 131072
    assert TABLE.resolve("microsoft/Phi-3-mini-4k-instruct").max_context == 4096


# --- the fp8 cache fix and the whole-GPU warning ---------------------------------------


def test_issue_fp8_weights_keep_a_bf16_cache():
    # estimate --model llama-3.1-8b --precision fp8 --context-length 96k:
    # 8030261248 x 1 + 2 x 32 x 8 x 128 x 2 x 98304 (12 GiB) + 2.25 GiB = 21.73 GiB > 0.9 x 19.50
    base = {ann.MODEL: "llama-3.1-8b", ann.PRECISION: "fp8", ann.CONTEXT_LENGTH: "96k"}
    need = estimate_need(base, POLICY)
    assert need.bytes == 8030261248 + 12 * GIB + 2304 * MIB
    assert decide(_pod(base), POLICY).profile.name == "3g.40gb"
    # --kv-cache-dtype fp8 halves the cache: 6 GiB, 15.73 GiB fits 1g.20gb again.
    fp8 = decide(_pod({**base, ann.KV_CACHE_DTYPE: "fp8"}), POLICY)
    assert fp8.need.bytes == need.bytes - 6 * GIB and fp8.profile.name == "1g.20gb"


def test_not_even_a_whole_gpu():
    d = decide(_pod({ann.MODEL: "deepseek-v3", ann.CONTEXT_LENGTH: "8k"}), POLICY)
    assert d.action == "whole-gpu"
    assert d.warnings[0].startswith("even a whole GPU will not hold it")
    # A need that a whole GPU holds but the pool's allowed profiles do not: no such warning.
    small_profiles = parse_policy_yaml("pools: [{name: h, gpuModel: H100-80GB, profiles: [1g.10gb]}]\n")
    d = decide(_pod({ann.MODEL: "llama-3.1-8b", ann.CONTEXT_LENGTH: "8k"}), small_profiles)
    assert d.action == "whole-gpu" and not any("even a whole GPU" in w for w in d.warnings)


# --- attention kinds ---------------------------------------------------------------------


def test_sliding_window_only_for_vllm_and_conservative_otherwise():
    base = {ann.MODEL: "gemma-3-27b", ann.CONTEXT_LENGTH: "128k"}
    full = estimate_need(base, POLICY)
    vllm = estimate_need({**base, ann.ENGINE: "vllm"}, POLICY)
    sglang = estimate_need({**base, ann.ENGINE: "sglang"}, POLICY)
    per_token_layer = 2 * 16 * 128 * 2
    assert full.bytes - 27432406640 * 2 - 2304 * MIB == 62 * 131072 * per_token_layer
    # vLLM: 10 full layers x 131072 + 6 groups of 10 sliding layers x (1023 + 8192 -> 577 blocks of 16).
    assert vllm.bytes - 27432406640 * 2 - 2304 * MIB == (10 * 131072 + 60 * 577 * 16) * per_token_layer
    assert sglang == full
    # A larger --max-num-batched-tokens holds more of the window (and scales activations).
    bigger = estimate_need({**base, ann.ENGINE: "vllm", ann.MAX_BATCHED_TOKENS: "16384"}, POLICY)
    assert bigger.bytes > vllm.bytes


def test_mla_latent_cache():
    need = estimate_need({ann.MODEL: "deepseek-v2-lite", ann.CONTEXT_LENGTH: "32k"}, POLICY)
    # 27 layers x (512 + 64) x 2 B x 32768
    assert need.bytes == 15706484224 * 2 + 27 * 576 * 2 * 32768 + 2304 * MIB
    assert "MLA latent 576" in need.explanation
    # TGI has no latent cache: full K/V heads (16 x 192).
    tgi = estimate_need({ann.MODEL: "deepseek-v2-lite", ann.CONTEXT_LENGTH: "32k", ann.ENGINE: "tgi"}, POLICY)
    assert tgi.bytes == 15706484224 * 2 + 2 * 27 * 16 * 192 * 2 * 32768 + 2304 * MIB


def test_published_quantized_checkpoint_is_its_own_size_unless_told():
    need = estimate_need({ann.MODEL: "gpt-oss-20b"}, POLICY)  # core estimate
    assert need.bytes == -(-13761264768 * 6 // 5) and "mxfp4 checkpoint" in need.explanation
    told = estimate_need({ann.MODEL: "gpt-oss-20b", ann.PRECISION: "bf16"}, POLICY)
    assert told.bytes == -(-20914757184 * 2 * 6 // 5)


# --- quantized checkpoint names ------------------------------------------------------------


@pytest.mark.parametrize(
    "name,key,precision",
    [
        ("Qwen/Qwen2.5-14B-Instruct-AWQ", "qwen2.5-14b", "int4"),
        ("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", "qwen2.5-7b", "int4"),
        ("Qwen/Qwen2.5-72B-Instruct-GPTQ-Int8", "qwen2.5-72b", "int8"),
        ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", "llama-3.1-8b", "fp8"),
        ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "llama-3.3-70b", "fp8"),
        ("RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16", "llama-3.1-8b", "int4"),
        ("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", "llama-3.1-70b", "int4"),
        ("unsloth/Llama-3.3-70B-Instruct-bnb-4bit", "llama-3.3-70b", "int4"),
        ("Qwen/Qwen3-30B-A3B-FP8", "qwen3-30b-a3b", "fp8"),
        ("/models/meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b", None),
        ("/mnt/models/Qwen3-8B/", "qwen3-8b", None),
    ],
)
def test_checkpoint_names(name, key, precision):
    arch = parse_model(name)
    assert (arch.key, arch.implied_precision) == (key, precision)


def test_name_precision_applies_unless_the_annotation_says_otherwise():
    awq = estimate_need({ann.MODEL: "Qwen/Qwen2.5-14B-Instruct-AWQ"}, POLICY)
    assert awq == estimate_need({ann.MODEL: "qwen2.5-14b", ann.PRECISION: "int4"}, POLICY)
    told = estimate_need({ann.MODEL: "Qwen/Qwen2.5-14B-Instruct-AWQ", ann.PRECISION: "bf16"}, POLICY)
    assert told.bytes > awq.bytes


@pytest.mark.parametrize(
    "name",
    ["nvidia/Llama-3.3-70B-Instruct-FP4", "bartowski/Llama-3.3-70B-Instruct-GGUF", "mlx-community/Qwen3-8B-4bit-MLX"],
)
def test_unsized_formats_are_refused_with_how_to_describe_them(name):
    with pytest.raises(ann.InvalidAnnotation) as err:
        parse_model(name)
    assert f"{ann.MODEL} (its base model) and {ann.PRECISION}" in str(err.value)


def test_unknown_quantized_name_gets_a_hint():
    with pytest.raises(ann.InvalidAnnotation) as err:
        parse_model("someone/Frobnicator-9B-AWQ")
    assert "quantized checkpoint of another model" in str(err.value)


# --- policy rows -----------------------------------------------------------------------------

POOLS = "pools: [{name: h, gpuModel: H100-80GB}]\n"
ROW = (
    "architectures:\n  acme-chat-7b:\n    config: acme/chat-7b/config.json\n    aliases: [acme/chat-7b]\n"
    "    params: 7000000000\n    layers: 32\n    kvHeads: 8\n    headDim: 128\n    maxContext: 16384\n"
)


def test_policy_rows_size_a_fine_tune():
    policy = parse_policy_yaml(POOLS + ROW)
    need = estimate_need({ann.MODEL: "acme/chat-7b", ann.CONTEXT_LENGTH: "8k"}, policy)
    assert need.bytes == 14_000_000_000 + 2 * 32 * 8 * 128 * 2 * 8192 + 2304 * MIB
    # Read from the command line too, with its own default context.
    spec = _pod({})
    spec["spec"]["containers"][0]["command"] = ["vllm", "serve", "acme/chat-7b"]
    decision = decide(spec, policy)
    assert "context 16384" in decision.message and decision.action == "rewrite"
    # The built-in table is untouched.
    with pytest.raises(ann.InvalidAnnotation):
        estimate_need({ann.MODEL: "acme/chat-7b"}, POLICY)


@pytest.mark.parametrize(
    "edit,path",
    [
        (("kvHeads: 8", "kvHeads: 0"), "architectures.acme-chat-7b.kvHeads"),
        (("kvHeads: 8", "kvHeads: '8'"), "architectures.acme-chat-7b.kvHeads"),
        (("headDim: 128", "headDim: 128\n    heads: 4"), "architectures.acme-chat-7b.heads"),
        (("    config: acme/chat-7b/config.json\n", ""), "architectures.acme-chat-7b.config"),
        (("maxContext: 16384", "maxContext: 16384\n    slidingWindow: 512"), "architectures.acme-chat-7b"),
        (("acme-chat-7b:", "Acme Chat:"), "architectures"),
        (
            (
                "maxContext: 16384",
                "maxContext: 16384\n  acme-b:\n    config: acme/b/config.json\n    aliases: [ACME/chat-7b]\n"
                "    params: 1\n    layers: 1\n    kvHeads: 1\n    headDim: 1",
            ),
            "architectures.acme-b.aliases",
        ),
    ],
)
def test_policy_rows_are_validated_like_the_table(edit, path):
    with pytest.raises(PolicyError) as err:
        parse_policy_yaml(POOLS + ROW.replace(*edit))
    assert str(err.value).startswith(path)


def _pod(annotations: dict) -> dict:
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {
            "containers": [{"name": "server", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]
        },
    }
