"""Inference sizing: the memory a serving engine (vLLM, TGI, SGLang) takes on a slice.

    need = weights + KV cache + activations + runtime overhead
    KV cache = 2 (K and V) x layers x kv-heads x head-dim x bytes(kv dtype) x context x concurrency

and a profile fits when need <= utilization x its real usable memory, because the engine
budgets only that fraction of the device (vLLM's --gpu-memory-utilization, 0.9 by default)
and refuses to start when the cache does not fit in it. README.md ("Sizing inference servers") derives
the constants. Pure functions; the architecture table is data (data/architectures.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

from webhook.core import annotations as ann
from webhook.core import model_table
from webhook.core.errors import UnsizedCheckpoint

# The table (webhook/core/model_table.py), re-exported: the estimate reads its rows.
from webhook.core.model_table import Architecture as Architecture
from webhook.core.model_table import ArchitectureTable as ArchitectureTable
from webhook.core.model_table import builtin_architectures as builtin_architectures
from webhook.core.model_table import table_from_data as table_from_data
from webhook.core.sizing import BYTES_PER_GIB, BYTES_PER_MIB, MemoryNeed, format_gib

# Weight bytes per parameter for the inference estimate. int4 carries its quantisation
# metadata: GPTQ/AWQ with group size 128 store an fp16 scale and a zero point per 128
# weights (4 + 32/128 = 4.25 bits) and keep embeddings, lm_head and norms in fp16; 4.5 bits
# (9/16 B) is a flat allowance for both (README.md, "Sizing inference servers", gives per-model figures).
WEIGHT_BYTES = {
    "fp32": Fraction(4),
    "fp16": Fraction(2),
    "bf16": Fraction(2),
    "fp8": Fraction(1),
    "int8": Fraction(1),
    "int4": Fraction(9, 16),
}
# kv-cache-dtype auto: the model's compute dtype, not its weights' storage. vLLM: "Data
# type for kv cache storage. If 'auto', will use model data type" (--kv-cache-dtype,
# docs.vllm.ai/en/latest/configuration/engine_args/), and the model data type (--dtype
# auto) of an FP8, AWQ, GPTQ or int8 checkpoint is its config's torch_dtype, bf16 or fp16:
# quantized weights are dequantised for compute. SGLang: "--kv-cache-dtype ... 'auto' will
# use model data type" (docs.sglang.ai, Server Arguments). TGI keeps the cache in --dtype.
# So only --kv-cache-dtype fp8 (the annotation kv-cache-dtype: fp8) gives a 1-byte cache;
# fp8 weights with `auto` keep a 2-byte one (issue 19: counting 1 byte halved the cache).
_AUTO_KV_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 2, "int8": 2, "int4": 2}


def _listed(keys: tuple[str, ...], limit: int = 320) -> str:
    """The table's keys for a message, cut at ``limit`` characters (a policy may add many)."""
    shown: list[str] = []
    length = 0
    for key in keys:
        if length + len(key) > limit:
            return ", ".join(shown) + f" and {len(keys) - len(shown)} more (gpu-rightsizer estimate --list-models)"
        shown.append(key)
        length += len(key) + 2
    return ", ".join(shown)


def parse_model(value: str, table: ArchitectureTable | None = None) -> Architecture:
    table = table or builtin_architectures()
    try:
        found = table.resolve(value) if isinstance(value, str) and len(value) <= 256 else None
    except UnsizedCheckpoint as err:
        raise ann.InvalidAnnotation(ann.MODEL, value, f"a model the table can size; this is {err}") from None
    if found is None:
        hint = ""
        if model_table.looks_quantized(value):
            hint = (
                f" (for a quantized checkpoint of another model: {ann.MODEL_SIZE} and {ann.ARCHITECTURE} "
                f"with {ann.PRECISION}, or a policy architectures: row)"
            )
        raise ann.InvalidAnnotation(
            ann.MODEL,
            value,
            "a table model, its repo id, or a quantized repackaging of one (<repo>-AWQ, -GPTQ-Int4, -FP8): "
            + _listed(tuple(table.models))
            + hint,
        )
    return found


def kv_cache_bytes(precision: str, kv_dtype: str) -> int:
    return _AUTO_KV_BYTES[precision] if kv_dtype == "auto" else ann.KV_CACHE_BYTES[kv_dtype]


@dataclass(frozen=True)
class ServingSettings:
    """What the pod says about its engine; every field already validated."""

    params: float
    precision: str
    layers: int
    kv_heads: int
    head_dim: int
    context: int
    concurrency: int = 1
    kv_dtype: str = "auto"
    # From the table's row (an explicit `architecture` annotation is plain full attention).
    sliding_layers: int = 0
    sliding_window: int | None = None
    mla_dim: int | None = None
    weight_bytes: int | None = None  # the row's published quantized checkpoint, when it applies
    weight_label: str = ""  # "(int4: -AWQ checkpoint)", "(mxfp4 checkpoint)"
    engine: str | None = None  # annotation `engine` (or the recognised command line)
    batched_tokens: int | None = None  # annotation `max-batched-tokens` (--max-num-batched-tokens)


# vLLM's paged KV cache: 16-token blocks (--block-size default on CUDA).
VLLM_BLOCK_TOKENS = 16
# Tokens one forward pass schedules when nothing says: vLLM's --max-num-batched-tokens
# default for the OpenAI server on devices of 70 GiB and more (2048 below: a slice); the
# larger is used, which keeps the sliding-window term conservative.
DEFAULT_BATCHED_TOKENS = 8192


def kv_cache_size(settings: ServingSettings) -> tuple[int, str]:
    """The KV cache in bytes for ``concurrency`` sequences of ``context`` tokens, and the
    attention kind's note for the arithmetic.

    - full attention: 2 (K, V) x kv-heads x head-dim x bytes per token and layer;
    - multi-head latent attention (DeepSeek V2/V3): one latent of kv_lora_rank +
      qk_rope_head_dim values per token and layer serves K and V (vLLM and SGLang cache
      the latent; TGI has no MLA cache and is not given the reduction);
    - sliding-window layers under vLLM: vLLM's hybrid KV cache manager gives a
      sliding-window layer min(window - 1 + max-num-batched-tokens, context) tokens plus
      one block per sequence (vllm/v1/kv_cache_interface.py SlidingWindowSpec
      .max_memory_usage_bytes), and groups layers so that every group has as many layers as
      the rarer kind has (transformers' continuous-batching cache.py describes the rule):
      each kind is padded to a whole number of groups. SGLang (--swa-full-tokens-ratio) and
      TGI are counted at full context, as is a pod whose engine is not known: conservative.
    """
    element = kv_cache_bytes(settings.precision, settings.kv_dtype)
    seqs = settings.concurrency
    if settings.mla_dim is not None and settings.engine != "tgi":
        kv = settings.layers * settings.mla_dim * element * settings.context * seqs
        return kv, f"; MLA latent {settings.mla_dim}"
    per_layer_token = 2 * settings.kv_heads * settings.head_dim * element
    sliding, window = settings.sliding_layers, settings.sliding_window
    if sliding and window and settings.engine == "vllm":
        batched = settings.batched_tokens or DEFAULT_BATCHED_TOKENS
        held = min(window - 1 + batched, settings.context)
        window_tokens = (-(-held // VLLM_BLOCK_TOKENS) + 1) * VLLM_BLOCK_TOKENS
        full = settings.layers - sliding
        group = min(full, sliding) if full else sliding
        full_slots = -(-full // group) * group
        sliding_slots = -(-sliding // group) * group
        kv = (full_slots * settings.context + sliding_slots * window_tokens) * per_layer_token * seqs
        return kv, f"; {sliding} of {settings.layers} layers sliding-window {window}"
    return settings.layers * per_layer_token * settings.context * seqs, ""


def inference_need(
    settings: ServingSettings, utilization: Fraction, activation_mib: int, runtime_overhead_mib: int
) -> MemoryNeed:
    """weights + KV cache + activations + runtime overhead, exact in bytes (rounded up once),
    with the arithmetic in the issue's form:
    ``weights 14.96 GiB + KV 4.00 GiB (8192 x 4) + 2.25 GiB -> 21.2 GiB``."""
    if settings.weight_bytes is not None:
        weights = Fraction(settings.weight_bytes)
    else:
        weights = Fraction(settings.params) * WEIGHT_BYTES[settings.precision]
    kv, kind = kv_cache_size(settings)
    activations = Fraction(activation_mib)
    if settings.batched_tokens is not None and settings.batched_tokens > DEFAULT_BATCHED_TOKENS:
        # The profiling pass runs max-num-batched-tokens at once: activations grow with it
        # (linearly here, which is conservative for the attention part).
        activations *= Fraction(settings.batched_tokens, DEFAULT_BATCHED_TOKENS)
    fixed = (activations + runtime_overhead_mib) * BYTES_PER_MIB
    total = math.ceil(weights + kv + fixed)
    label = f" {settings.weight_label}" if settings.weight_label else ""
    explanation = (
        f"weights {format_gib(float(weights))}{label} + KV {format_gib(kv)} ({settings.context} x {settings.concurrency}{kind}) "
        f"+ {format_gib(float(fixed))} -> {total / BYTES_PER_GIB:.1f} GiB"
    )
    return MemoryNeed(bytes=total, explanation=explanation, utilization=utilization)


def weights_label(arch: Architecture | None, precision: str, explicit_precision: bool) -> tuple[int | None, str]:
    """The row's published checkpoint bytes when the pod states no other precision, and
    the note that says where the weight size came from."""
    if arch is None:
        return None, ""
    if arch.weight_bytes is not None and not explicit_precision and not arch.implied_precision:
        return arch.weight_bytes, f"({arch.weight_format} checkpoint)"
    if arch.implied_precision and precision == arch.implied_precision:
        return None, f"({precision}: {arch.quantization} checkpoint)"
    return None, ""


def checkpoint_need(arch: Architecture, overhead_factor: float) -> MemoryNeed:
    """The core (weights-only) estimate of a row published quantized: its checkpoint's
    bytes x the overhead factor, as params x bytes x factor is for the others."""
    weight_bytes = cast(int, arch.weight_bytes)  # called only for a row published quantized
    n_bytes = math.ceil(Fraction(weight_bytes) * Fraction(str(overhead_factor)))
    return MemoryNeed(
        bytes=n_bytes,
        explanation=f"{arch.key} {arch.weight_format} checkpoint {format_gib(weight_bytes)} x {overhead_factor:g} = {format_gib(n_bytes)}",
    )


def serving_settings(
    annotations: Mapping[str, str],
    precision: str,
    params: float | None,
    arch: Architecture | None,
    explicit_precision: bool = True,
) -> ServingSettings | None:
    """The inference settings the annotations give, or None without `context-length` (then
    the core estimate applies unchanged). Validates every inference annotation present.
    ``params`` is model-size's count when given (it overrides the table's); ``arch`` the
    parsed `model` annotation; ``explicit_precision`` whether the pod states a precision
    (else a row published quantized is sized by its checkpoint)."""
    explicit = ann.parse_architecture(annotations[ann.ARCHITECTURE]) if ann.ARCHITECTURE in annotations else None
    concurrency = (
        ann.parse_max_concurrency(annotations[ann.MAX_CONCURRENCY]) if ann.MAX_CONCURRENCY in annotations else 1
    )
    kv_dtype = (
        ann.parse_kv_cache_dtype(annotations[ann.KV_CACHE_DTYPE]) if ann.KV_CACHE_DTYPE in annotations else "auto"
    )
    engine = ann.parse_engine(annotations[ann.ENGINE]) if ann.ENGINE in annotations else None
    batched = (
        ann.parse_max_batched_tokens(annotations[ann.MAX_BATCHED_TOKENS])
        if ann.MAX_BATCHED_TOKENS in annotations
        else None
    )
    if ann.CONTEXT_LENGTH not in annotations:
        return None
    context = ann.parse_context_length(annotations[ann.CONTEXT_LENGTH])
    model_size_given = params is not None
    if params is None and arch is not None:
        params = arch.params
    if (arch is None and explicit is None) or params is None:
        raise ann.InvalidAnnotation(
            ann.CONTEXT_LENGTH,
            annotations[ann.CONTEXT_LENGTH],
            f"it together with {ann.MODEL} (a table model), or with {ann.ARCHITECTURE} and {ann.MODEL_SIZE}: "
            "the KV cache needs layers, kv-heads and head-dim, the weights a parameter count",
        )
    # An explicit architecture describes the pod's real model, so it wins over the table's.
    # (an explicit architecture is plain full attention)
    sliding_layers, sliding_window, mla_dim = 0, None, None
    if explicit is not None:
        layers, kv_heads, head_dim = explicit["layers"], explicit["kv-heads"], explicit["head-dim"]
    else:
        arch = cast(Architecture, arch)  # checked above: no architecture at all is refused
        layers, kv_heads, head_dim = arch.layers, arch.kv_heads, arch.head_dim
        sliding_layers, sliding_window, mla_dim = arch.sliding_layers, arch.sliding_window, arch.mla_dim
    weight_bytes, label = weights_label(arch, precision, explicit_precision or model_size_given)
    return ServingSettings(
        params=params,
        precision=precision,
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context=context,
        concurrency=concurrency,
        kv_dtype=kv_dtype,
        weight_bytes=weight_bytes,
        weight_label=label,
        engine=engine,
        batched_tokens=batched,
        sliding_layers=sliding_layers,
        sliding_window=sliding_window,
        mla_dim=mla_dim,
    )
