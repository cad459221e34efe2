"""Every row of webhook/core/data/architectures.yaml against the config.json it cites.

CITED holds the config.json values as published on Hugging Face (copies checked in the
public code index: citsjtu2020/LLM-Prof sglang/Model_Config.md, kevinstephano/
thunder_model_blocks hf_llama/llama_config.py, AI-Hypercomputer/maxtext
hf_model_configs.py, rwth-i6/i6_experiments qwen2_configs.py, keras-team/keras-hub
phi3_presets.py). They are typed here from those sources, not from the table, and the
parameter count is recomputed from the shapes and checked against the table and against
../shared/measurements/h100-llm-memory.json.
"""

from __future__ import annotations

import json

import pytest

from tests.support.fixtures import measurements_path
from webhook.core.inference import builtin_architectures

# config.json keys: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
# num_attention_heads, num_key_value_heads, head_dim (None = absent: hidden/heads),
# tie_word_embeddings; plus the architecture's shape facts: qkv bias (Qwen2), experts
# (Mixtral num_local_experts), norms per layer (Gemma 2 has 4).
CITED = {
    "llama-3.1-8b": dict(
        config="meta-llama/Llama-3.1-8B/config.json",
        vocab=128256,
        hidden=4096,
        inter=14336,
        layers=32,
        heads=32,
        kv=8,
        head_dim=None,
        tied=False,
    ),
    "llama-3.1-70b": dict(
        config="meta-llama/Llama-3.1-70B/config.json",
        vocab=128256,
        hidden=8192,
        inter=28672,
        layers=80,
        heads=64,
        kv=8,
        head_dim=None,
        tied=False,
    ),
    "llama-3.2-1b": dict(
        config="meta-llama/Llama-3.2-1B/config.json",
        vocab=128256,
        hidden=2048,
        inter=8192,
        layers=16,
        heads=32,
        kv=8,
        head_dim=64,
        tied=True,
    ),
    "llama-3.2-3b": dict(
        config="meta-llama/Llama-3.2-3B/config.json",
        vocab=128256,
        hidden=3072,
        inter=8192,
        layers=28,
        heads=24,
        kv=8,
        head_dim=128,
        tied=True,
    ),
    "mistral-7b": dict(
        config="mistralai/Mistral-7B-v0.3/config.json",
        vocab=32768,
        hidden=4096,
        inter=14336,
        layers=32,
        heads=32,
        kv=8,
        head_dim=None,
        tied=False,
    ),
    "mixtral-8x7b": dict(
        config="mistralai/Mixtral-8x7B-v0.1/config.json",
        vocab=32000,
        hidden=4096,
        inter=14336,
        layers=32,
        heads=32,
        kv=8,
        head_dim=None,
        tied=False,
        experts=8,
    ),
    "qwen2.5-0.5b": dict(
        config="Qwen/Qwen2.5-0.5B/config.json",
        vocab=151936,
        hidden=896,
        inter=4864,
        layers=24,
        heads=14,
        kv=2,
        head_dim=None,
        tied=True,
        qkv_bias=True,
    ),
    "qwen2.5-1.5b": dict(
        config="Qwen/Qwen2.5-1.5B/config.json",
        vocab=151936,
        hidden=1536,
        inter=8960,
        layers=28,
        heads=12,
        kv=2,
        head_dim=None,
        tied=True,
        qkv_bias=True,
    ),
    "qwen2.5-3b": dict(
        config="Qwen/Qwen2.5-3B/config.json",
        vocab=151936,
        hidden=2048,
        inter=11008,
        layers=36,
        heads=16,
        kv=2,
        head_dim=None,
        tied=True,
        qkv_bias=True,
    ),
    "qwen2.5-7b": dict(
        config="Qwen/Qwen2.5-7B/config.json",
        vocab=152064,
        hidden=3584,
        inter=18944,
        layers=28,
        heads=28,
        kv=4,
        head_dim=None,
        tied=False,
        qkv_bias=True,
    ),
    "qwen2.5-14b": dict(
        config="Qwen/Qwen2.5-14B/config.json",
        vocab=152064,
        hidden=5120,
        inter=13824,
        layers=48,
        heads=40,
        kv=8,
        head_dim=None,
        tied=False,
        qkv_bias=True,
    ),
    "qwen2.5-32b": dict(
        config="Qwen/Qwen2.5-32B/config.json",
        vocab=152064,
        hidden=5120,
        inter=27648,
        layers=64,
        heads=40,
        kv=8,
        head_dim=None,
        tied=False,
        qkv_bias=True,
    ),
    "qwen2.5-72b": dict(
        config="Qwen/Qwen2.5-72B/config.json",
        vocab=152064,
        hidden=8192,
        inter=29568,
        layers=80,
        heads=64,
        kv=8,
        head_dim=None,
        tied=False,
        qkv_bias=True,
    ),
    "gemma-2-2b": dict(
        config="google/gemma-2-2b/config.json",
        vocab=256000,
        hidden=2304,
        inter=9216,
        layers=26,
        heads=8,
        kv=4,
        head_dim=256,
        tied=True,
        norms=4,
    ),
    "gemma-2-9b": dict(
        config="google/gemma-2-9b/config.json",
        vocab=256000,
        hidden=3584,
        inter=14336,
        layers=42,
        heads=16,
        kv=8,
        head_dim=256,
        tied=True,
        norms=4,
    ),
    "gemma-2-27b": dict(
        config="google/gemma-2-27b/config.json",
        vocab=256000,
        hidden=4608,
        inter=36864,
        layers=46,
        heads=32,
        kv=16,
        head_dim=128,
        tied=True,
        norms=4,
    ),
    "phi-3-mini": dict(
        config="microsoft/Phi-3-mini-4k-instruct/config.json",
        vocab=32064,
        hidden=3072,
        inter=8192,
        layers=32,
        heads=32,
        kv=32,
        head_dim=None,
        tied=False,
    ),
    "phi-3-medium": dict(
        config="microsoft/Phi-3-medium-4k-instruct/config.json",
        vocab=32064,
        hidden=5120,
        inter=17920,
        layers=40,
        heads=40,
        kv=10,
        head_dim=None,
        tied=False,
    ),
}

MEASUREMENTS = measurements_path()
TABLE = builtin_architectures()


def cited_head_dim(c: dict) -> int:
    return c["head_dim"] if c["head_dim"] is not None else c["hidden"] // c["heads"]


def params_from_shapes(c: dict) -> int:
    """Decoder-only transformer with gated MLP (gate, up, down), RMSNorm, RoPE."""
    h, hd = c["hidden"], cited_head_dim(c)
    experts = c.get("experts", 1)
    attention = h * c["heads"] * hd + 2 * h * c["kv"] * hd + c["heads"] * hd * h
    if c.get("qkv_bias"):
        attention += c["heads"] * hd + 2 * c["kv"] * hd
    mlp = experts * 3 * h * c["inter"] + (h * experts if experts > 1 else 0)  # + router
    per_layer = attention + mlp + c.get("norms", 2) * h
    embeddings = c["vocab"] * h * (1 if c["tied"] else 2)
    return embeddings + c["layers"] * per_layer + h  # + final norm


def test_table_has_the_required_models():
    # The rows added since (issue 19) are checked in tests/core/test_models_2026.py.
    assert set(CITED) <= set(TABLE.models)


@pytest.mark.parametrize("key", sorted(CITED))
def test_row_matches_its_config(key):
    row, c = TABLE.models[key], CITED[key]
    assert row.config == c["config"]
    assert row.layers == c["layers"]
    assert row.kv_heads == c["kv"]
    assert row.head_dim == cited_head_dim(c)
    assert row.hidden_size == c["hidden"]
    assert row.attention_heads == c["heads"]
    assert row.params == params_from_shapes(c)


def test_the_known_traps():
    # Gemma 2's head_dim is its own config value, not hidden / heads.
    assert TABLE.lookup("gemma-2-9b").head_dim == 256 != 3584 // 16
    assert TABLE.lookup("gemma-2-2b").head_dim == 256 != 2304 // 8
    # Phi-3 mini is multi-head attention: as many KV heads as query heads.
    assert TABLE.lookup("phi-3-mini").kv_heads == 32
    # Mixtral keeps all experts resident: 46.7B, not the 12.9B active per token.
    assert round(TABLE.lookup("mixtral-8x7b").params / 1e9, 1) == 46.7


def test_params_match_the_measured_models():
    runs = [r for r in json.loads(MEASUREMENTS.read_text()) if "model" in r]
    assert runs
    for run in runs:
        assert abs(TABLE.lookup(run["model"]).params / 1e9 - run["params_b"]) < 0.0005, run["model"]


def test_lookup_by_hugging_face_repo_id_is_case_insensitive():
    assert TABLE.lookup("Meta-Llama/Llama-3.1-8B-Instruct").key == "llama-3.1-8b"
    assert TABLE.lookup(" QWEN2.5-7B ").key == "qwen2.5-7b"
    assert TABLE.lookup("llama-4") is None
