"""The pod annotations gpu-rightsizer reads and writes, and their parsers.

Every parser raises :class:`InvalidAnnotation`, which names the annotation, the value
(quoted and shortened, so a pod author cannot forge log lines or inflate responses with
it) and what is accepted.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction

# The annotation names (webhook/core/constants.py), re-exported: ``ann.MODEL_SIZE`` reads well.
from webhook.core.constants import ANNOTATION_KEYS
from webhook.core.constants import ARCHITECTURE as ARCHITECTURE
from webhook.core.constants import ASSIGNED_PROFILE as ASSIGNED_PROFILE
from webhook.core.constants import CONTEXT_LENGTH as CONTEXT_LENGTH
from webhook.core.constants import DECISION as DECISION
from webhook.core.constants import ENGINE as ENGINE
from webhook.core.constants import GPU_MEMORY as GPU_MEMORY
from webhook.core.constants import GPU_MEMORY_UTILIZATION as GPU_MEMORY_UTILIZATION
from webhook.core.constants import KV_CACHE_DTYPE as KV_CACHE_DTYPE
from webhook.core.constants import MAX_BATCHED_TOKENS as MAX_BATCHED_TOKENS
from webhook.core.constants import MAX_CONCURRENCY as MAX_CONCURRENCY
from webhook.core.constants import MODEL as MODEL
from webhook.core.constants import MODEL_SIZE as MODEL_SIZE
from webhook.core.constants import PRECISION as PRECISION
from webhook.core.constants import PREFIX as PREFIX
from webhook.core.constants import PROFILE as PROFILE
from webhook.core.constants import SKIP as SKIP
from webhook.core.constants import WORKLOAD_CLASS as WORKLOAD_CLASS
from webhook.core.errors import InvalidAnnotation as InvalidAnnotation  # ``ann.InvalidAnnotation``
from webhook.core.quantity import parse_quantity
from webhook.core.text import quote_value

# Annotations that say how big the pod's GPU need is; without any of them we cannot size.
SIZING_ANNOTATIONS = (PROFILE, GPU_MEMORY, MODEL_SIZE, MODEL)

BYTES_PER_PARAM = {
    "fp32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}

_SUFFIXES = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
# Matched against the stripped value, and only after a length check: the earlier pattern
# had `\s*` on both sides of an optional suffix, which backtracks quadratically on a
# long run of spaces (a 16 KB value took 1.7 s, a 1 MB one would hold a worker for hours).
_MODEL_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([kmbtKMBT]?)")
_MAX_NUMBER_TEXT = 64
# Larger than any model that exists by orders of magnitude; past this the figure is a typo.
_MAX_PARAMS = 1e15
# 1 PiB: no GPU has it; keeps float arithmetic exact enough and rejects 1e309.
_MAX_MEMORY_BYTES = 2**50


def parse_model_size(value: str) -> float:
    """`7b`, `13B`, `1.5b`, `350m`, `560000000` -> parameter count."""
    ok = isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT
    match = _MODEL_SIZE.fullmatch(value.strip()) if ok else None
    accepted = (
        "a parameter count: a decimal number with an optional suffix k, m, b or t (7b, 13B, 1.5b, 350m, 560000000)"
    )
    if not match:
        raise InvalidAnnotation(MODEL_SIZE, value, accepted)
    params = float(match.group(1)) * _SUFFIXES[match.group(2).lower()]
    if not (0 < params <= _MAX_PARAMS) or not math.isfinite(params):
        raise InvalidAnnotation(MODEL_SIZE, value, accepted + ", greater than 0 and at most 1000t")
    return params


def parse_precision(value: str) -> str:
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in BYTES_PER_PARAM:
        raise InvalidAnnotation(PRECISION, value, "one of " + ", ".join(BYTES_PER_PARAM))
    return key


def parse_memory_bytes(value: str, annotation: str = GPU_MEMORY) -> float:
    """A Kubernetes quantity (`18Gi`, `20G`, `512Mi`) -> bytes, positive and finite."""
    accepted = "a Kubernetes quantity of at least 1 byte and below 1Pi, such as 18Gi, 20G or 512Mi"
    if not isinstance(value, str) or len(value) > _MAX_NUMBER_TEXT:
        raise InvalidAnnotation(annotation, value, accepted)
    try:
        amount = parse_quantity(value.strip())
    except (ValueError, InvalidOperation, TypeError):
        raise InvalidAnnotation(annotation, value, accepted) from None
    # Below one byte (1e-999999999) is no memory need at all: refused, not sized as zero.
    if not amount.is_finite() or amount < 1 or amount >= Decimal(_MAX_MEMORY_BYTES):
        raise InvalidAnnotation(annotation, value, accepted)
    return float(amount)


def parse_skip(value: object) -> bool:
    """``skip``: "true" or "false" (any case, spaces around); absent is false. Anything
    else is refused like every other annotation's bad value, rather than read as false."""
    if value is None:
        return False
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in ("true", "false"):
        raise InvalidAnnotation(SKIP, value, '"true" or "false"')
    return text == "true"


def unknown_keys(annotations: Mapping[str, object]) -> list[str]:
    """A warning for each annotation under gpu-rightsizer.io/ that is not one of ours, with
    the closest known key (a typo would otherwise be ignored without a word)."""
    notes = []
    for key in annotations:
        if key.startswith(PREFIX) and key not in ANNOTATION_KEYS:
            close = difflib.get_close_matches(key[len(PREFIX) :], [k[len(PREFIX) :] for k in ANNOTATION_KEYS], n=1)
            hint = (
                f"; did you mean {close[0]}?"
                if close
                else f"; known: {', '.join(k[len(PREFIX) :] for k in ANNOTATION_KEYS)}"
            )
            notes.append(f"annotation {quote_value(key, 80)} is not one of gpu-rightsizer's and is ignored{hint}")
    return notes


# --- inference sizing -----------------------------------------------------------------

# Bytes per KV-cache element. `auto` is resolved against the weight precision by
# webhook.core.inference (vLLM's --kv-cache-dtype auto = the model's compute dtype); fp8_e4m3/fp8_e5m2
# are vLLM's spellings of fp8.
KV_CACHE_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
KV_CACHE_DTYPES = ("auto", *KV_CACHE_BYTES)

_CONTEXT = re.compile(r"^\s*([0-9]{1,9})\s*([kK]?)\s*$")
# 16M tokens: beyond any model's trained context (Llama 3.1: 128k); a larger figure is a typo.
MAX_CONTEXT_TOKENS = 16 * 1024 * 1024
MAX_CONCURRENCY_SEQS = 65536
_INTEGER = re.compile(r"^\s*([0-9]{1,9})\s*$")
_FRACTION = re.compile(r"^\s*(1(?:\.0*)?|0?\.[0-9]{1,6}|0)\s*$")
ARCHITECTURE_KEYS = ("layers", "kv-heads", "head-dim")
_ARCH_LIMITS = {"layers": 1024, "kv-heads": 1024, "head-dim": 4096}


def parse_context_length(value: str) -> int:
    """`8192`, `8k`, `128k` -> tokens per sequence (k = 1024, as context sizes are named)."""
    accepted = (
        "a whole number of tokens, optionally with suffix k (x 1024): 8192, 8k, 128k; "
        f"from 1 to {MAX_CONTEXT_TOKENS // 1024}k"
    )
    match = _CONTEXT.match(value) if isinstance(value, str) else None
    if not match:
        raise InvalidAnnotation(CONTEXT_LENGTH, value, accepted)
    tokens = int(match.group(1)) * (1024 if match.group(2) else 1)
    if not 1 <= tokens <= MAX_CONTEXT_TOKENS:
        raise InvalidAnnotation(CONTEXT_LENGTH, value, accepted)
    return tokens


def _whole_number(value: str, annotation: str, upper: int, accepted: str) -> int:
    match = _INTEGER.match(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match.group(1)) <= upper:
        raise InvalidAnnotation(annotation, value, accepted)
    return int(match.group(1))


def parse_max_concurrency(value: str) -> int:
    accepted = f"a whole number of sequences served at once, from 1 to {MAX_CONCURRENCY_SEQS}"
    return _whole_number(value, MAX_CONCURRENCY, MAX_CONCURRENCY_SEQS, accepted)


def parse_kv_cache_dtype(value: str) -> str:
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in KV_CACHE_DTYPES:
        raise InvalidAnnotation(
            KV_CACHE_DTYPE,
            value,
            "one of "
            + ", ".join(KV_CACHE_DTYPES)
            + " (auto = the model's compute dtype: 2 bytes, 4 for fp32; only fp8 gives 1)",
        )
    return key


def parse_utilization(value: str, annotation: str = GPU_MEMORY_UTILIZATION) -> Fraction:
    """`0.9` -> Fraction(9, 10): greater than 0 and at most 1, as vLLM's
    --gpu-memory-utilization. Exact, so `need <= 0.9 x memory` has no float rounding."""
    accepted = "a decimal fraction of the slice greater than 0 and at most 1, such as 0.9 or 0.85"
    match = _FRACTION.match(value) if isinstance(value, str) else None
    if not match:
        raise InvalidAnnotation(annotation, value, accepted)
    fraction = Fraction(match.group(1))
    if fraction <= 0:
        raise InvalidAnnotation(annotation, value, accepted)
    return fraction


def parse_architecture(value: str) -> dict[str, int]:
    """`layers=32,kv-heads=8,head-dim=128` -> {"layers": 32, "kv-heads": 8, "head-dim": 128};
    all three keys, each once, in any order."""
    accepted = (
        "layers=N,kv-heads=N,head-dim=N (each key once, whole numbers from 1; layers and "
        "kv-heads at most 1024, head-dim at most 4096), e.g. layers=32,kv-heads=8,head-dim=128"
    )
    if not isinstance(value, str) or len(value) > 128:
        raise InvalidAnnotation(ARCHITECTURE, value, accepted)
    found: dict[str, int] = {}
    for part in value.split(","):
        key, sep, number = (p.strip() for p in part.partition("="))
        key = key.lower()
        if not sep or key not in _ARCH_LIMITS or key in found or not number.isdecimal() or not number.isascii():
            raise InvalidAnnotation(ARCHITECTURE, value, accepted)
        n = int(number)
        if not 1 <= n <= _ARCH_LIMITS[key]:
            raise InvalidAnnotation(ARCHITECTURE, value, accepted)
        found[key] = n
    if set(found) != set(ARCHITECTURE_KEYS):
        raise InvalidAnnotation(ARCHITECTURE, value, accepted)
    return found


ENGINES = ("vllm", "sglang", "tgi")
MAX_BATCHED = 10**9


def parse_engine(value: str) -> str:
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in ENGINES:
        raise InvalidAnnotation(ENGINE, value, "one of " + ", ".join(ENGINES) + " (the serving engine)")
    return key


def parse_max_batched_tokens(value: str) -> int:
    accepted = (
        f"a whole number of tokens one forward pass takes (vLLM --max-num-batched-tokens), from 1 to {MAX_BATCHED}"
    )
    return _whole_number(value, MAX_BATCHED_TOKENS, MAX_BATCHED, accepted)
