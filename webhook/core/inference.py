"""Inference sizing: the memory a serving engine (vLLM, TGI, SGLang) takes on a slice.

    need = weights + KV cache + activations + runtime overhead
    KV cache = 2 (K and V) x layers x kv-heads x head-dim x bytes(kv dtype) x context x concurrency

and a profile fits when need <= utilization x its real usable memory, because the engine
budgets only that fraction of the device (vLLM's --gpu-memory-utilization, 0.9 by default)
and refuses to start when the cache does not fit in it. README.md ("Sizing inference servers") derives
the constants. Pure functions; the architecture table is data (data/architectures.yaml).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Any, cast

import yaml

from webhook.core import annotations as ann
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
# kv-cache-dtype auto: the weight precision, but integer weights are dequantised to fp16
# for compute, so their cache is fp16 (vLLM: kv_cache_dtype "auto" = model dtype).
_AUTO_KV_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 2, "int4": 2}


@dataclass(frozen=True)
class Architecture:
    key: str
    config: str  # the Hugging Face config.json it was read from ("" for an annotation)
    params: int | None
    layers: int
    kv_heads: int
    head_dim: int
    hidden_size: int | None = None
    attention_heads: int | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArchitectureTable:
    models: Mapping[str, Architecture]
    _names: Mapping[str, str]

    def lookup(self, name: str) -> Architecture | None:
        """A model by table key or Hugging Face repo id (case-insensitive)."""
        key = self._names.get(name.strip().lower())
        return self.models[key] if key else None


def table_from_data(data: dict[str, Any]) -> ArchitectureTable:
    models: dict[str, Architecture] = {}
    names: dict[str, str] = {}
    for key, row in data["models"].items():
        arch = Architecture(
            key=key,
            config=row["config"],
            params=int(row["params"]),
            layers=int(row["layers"]),
            kv_heads=int(row["kvHeads"]),
            head_dim=int(row["headDim"]),
            hidden_size=row.get("hiddenSize"),
            attention_heads=row.get("attentionHeads"),
            aliases=tuple(row.get("aliases", ())),
        )
        models[key] = arch
        for name in (key, *arch.aliases):
            names[name.lower()] = key
    return ArchitectureTable(models=models, _names=names)


@functools.lru_cache(maxsize=1)
def builtin_architectures() -> ArchitectureTable:
    text = resources.files("webhook.core").joinpath("data/architectures.yaml").read_text()
    return table_from_data(yaml.safe_load(text))


def parse_model(value: str, table: ArchitectureTable | None = None) -> Architecture:
    table = table or builtin_architectures()
    found = table.lookup(value) if isinstance(value, str) and len(value) <= 128 else None
    if found is None:
        raise ann.InvalidAnnotation(
            ann.MODEL, value, "a model of the built-in table (or its Hugging Face repo id): " + ", ".join(table.models)
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


def inference_need(
    settings: ServingSettings, utilization: Fraction, activation_mib: int, runtime_overhead_mib: int
) -> MemoryNeed:
    """weights + KV cache + activations + runtime overhead, exact in bytes (rounded up once),
    with the arithmetic in the issue's form:
    ``weights 14.96 GiB + KV 4.00 GiB (8192 x 4) + 2.25 GiB -> 21.2 GiB``."""
    weights = Fraction(settings.params) * WEIGHT_BYTES[settings.precision]
    kv = (
        2
        * settings.layers
        * settings.kv_heads
        * settings.head_dim
        * kv_cache_bytes(settings.precision, settings.kv_dtype)
        * settings.context
        * settings.concurrency
    )
    fixed = (activation_mib + runtime_overhead_mib) * BYTES_PER_MIB
    total = math.ceil(weights + kv + fixed)
    explanation = (
        f"weights {format_gib(float(weights))} + KV {format_gib(kv)} ({settings.context} x {settings.concurrency}) "
        f"+ {format_gib(fixed)} -> {total / BYTES_PER_GIB:.1f} GiB"
    )
    return MemoryNeed(bytes=total, explanation=explanation, utilization=utilization)


def serving_settings(
    annotations: Mapping[str, str], precision: str, params: float | None, arch: Architecture | None
) -> ServingSettings | None:
    """The inference settings the annotations give, or None without `context-length` (then
    the core estimate applies unchanged). Validates every inference annotation present.
    ``params`` is model-size's count when given (it overrides the table's); ``arch`` the
    parsed `model` annotation."""
    explicit = ann.parse_architecture(annotations[ann.ARCHITECTURE]) if ann.ARCHITECTURE in annotations else None
    concurrency = (
        ann.parse_max_concurrency(annotations[ann.MAX_CONCURRENCY]) if ann.MAX_CONCURRENCY in annotations else 1
    )
    kv_dtype = (
        ann.parse_kv_cache_dtype(annotations[ann.KV_CACHE_DTYPE]) if ann.KV_CACHE_DTYPE in annotations else "auto"
    )
    if ann.CONTEXT_LENGTH not in annotations:
        return None
    context = ann.parse_context_length(annotations[ann.CONTEXT_LENGTH])
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
    if explicit is not None:
        layers, kv_heads, head_dim = explicit["layers"], explicit["kv-heads"], explicit["head-dim"]
    else:
        arch = cast(Architecture, arch)  # checked above: no architecture at all is refused
        layers, kv_heads, head_dim = arch.layers, arch.kv_heads, arch.head_dim
    return ServingSettings(
        params=params,
        precision=precision,
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context=context,
        concurrency=concurrency,
        kv_dtype=kv_dtype,
    )
