"""The architecture table's schema, and the names a served checkpoint goes by.

One schema validates both the built-in table (webhook/core/data/architectures.yaml) and the
rows a policy adds under ``architectures:``, so a cluster's own fine-tune is checked
exactly as a released row is. :func:`resolve_checkpoint` maps the names users serve —
quantized repackagings (``Qwen/Qwen2.5-14B-Instruct-AWQ``, ``neuralmagic/...-FP8``,
``...-GPTQ-Int4``), local paths (``/models/Llama-3.1-8B-Instruct``) — to a table row and
the weight precision the name implies, or says how to describe the checkpoint instead.

It also holds the table itself (:class:`ArchitectureTable`, the built-in one read once from
the package data), so the policy can add its rows without importing the estimate.

Pure: no I/O but reading the package's own data file; imports nothing of the webhook but
the annotation names and the errors.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from webhook.core import annotations as ann
from webhook.core.errors import TableError, UnsizedCheckpoint

KEY_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_MAX_NAME = 256


class ArchitectureRow(BaseModel):
    """One model. Field names are the YAML's (camelCase); each is a config.json value
    (README "The architecture table" and docs/engine-flags.md say which)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, strict=True)

    # Where the figures were read (a Hugging Face <repo>/config.json, or the cluster's own
    # file for a fine-tune): every row names its source.
    config: str = Field(min_length=1, max_length=_MAX_NAME)
    aliases: list[str] = []
    params: int = Field(ge=1, le=10**15)
    layers: int = Field(ge=1, le=1024)
    kv_heads: int = Field(ge=1, le=1024)
    head_dim: int = Field(ge=1, le=4096)
    hidden_size: int | None = Field(default=None, ge=1, le=1 << 20)
    attention_heads: int | None = Field(default=None, ge=1, le=4096)
    # max_position_embeddings: vLLM's and SGLang's default --max-model-len/--context-length.
    max_context: int | None = Field(default=None, ge=1, le=ann.MAX_CONTEXT_TOKENS)
    # Aliases whose config.json says another max_position_embeddings than the row's
    # (Phi-3 mini 4k vs 128k share every shape but the context).
    alias_max_context: dict[str, int] = {}
    # Sliding-window attention: how many of the layers attend over a window, and its size.
    sliding_window: int | None = Field(default=None, ge=1, le=ann.MAX_CONTEXT_TOKENS)
    sliding_layers: int | None = Field(default=None, ge=1, le=1024)
    # Multi-head latent attention (DeepSeek V2/V3): the cache holds kv_lora_rank +
    # qk_rope_head_dim values per token and layer, for K and V together.
    kv_lora_rank: int | None = Field(default=None, ge=1, le=65536)
    qk_rope_head_dim: int | None = Field(default=None, ge=1, le=4096)
    # Mixture of experts: every expert is resident (params counts them all); recorded for
    # the decision's text.
    experts: int | None = Field(default=None, ge=2, le=4096)
    active_experts: int | None = Field(default=None, ge=1, le=4096)
    # A checkpoint published quantized (gpt-oss: MXFP4 experts): the bytes its weights
    # take, used when the pod states no precision, and the format's name.
    weight_bytes: int | None = Field(default=None, ge=1, le=2**50)
    weight_format: str | None = Field(default=None, min_length=1, max_length=32)
    notes: str = ""

    @model_validator(mode="after")
    def _pairs(self) -> ArchitectureRow:
        for a, b in (
            ("sliding_window", "sliding_layers"),
            ("kv_lora_rank", "qk_rope_head_dim"),
            ("experts", "active_experts"),
            ("weight_bytes", "weight_format"),
        ):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                raise ValueError(f"{to_camel(a)} and {to_camel(b)} go together: give both or neither")
        if self.sliding_layers is not None and self.sliding_layers > self.layers:
            raise ValueError(f"slidingLayers {self.sliding_layers} is more than layers {self.layers}")
        if self.experts is not None and self.active_experts is not None and self.active_experts > self.experts:
            raise ValueError(f"activeExperts {self.active_experts} is more than experts {self.experts}")
        if self.kv_lora_rank is not None and self.sliding_window is not None:
            raise ValueError("a row is either multi-head latent attention or sliding-window, not both")
        for name, context in self.alias_max_context.items():
            if name.lower() not in {a.lower() for a in self.aliases}:
                raise ValueError(f"aliasMaxContext names {name!r}, which is not one of the row's aliases")
            if not 1 <= context <= ann.MAX_CONTEXT_TOKENS:
                raise ValueError(f"aliasMaxContext[{name!r}] must be from 1 to {ann.MAX_CONTEXT_TOKENS}")
        for name in self.aliases:
            if not name or len(name) > _MAX_NAME:
                raise ValueError(f"alias {name[:64]!r} must be 1 to {_MAX_NAME} characters")
        return self


def _loc(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{to_camel(str(p))}" for p in loc)


def validate_rows(rows: object, where: str) -> dict[str, ArchitectureRow]:
    """Validated rows by key; raises TableError naming ``where.<key>.<field>``."""
    if not isinstance(rows, dict):
        raise TableError(f"{where}: must be a mapping of model key to row, not {type(rows).__name__}")
    out: dict[str, ArchitectureRow] = {}
    seen: dict[str, str] = {}
    for key, row in rows.items():
        if not isinstance(key, str) or not re.match(KEY_PATTERN, key):
            raise TableError(f"{where}: key {str(key)[:64]!r} must match {KEY_PATTERN} (lower case)")
        if not isinstance(row, dict):
            raise TableError(f"{where}.{key}: must be a mapping, not {type(row).__name__}")
        try:
            parsed = ArchitectureRow.model_validate(row)
        except ValidationError as err:
            first = err.errors()[0]
            raise TableError(f"{where}.{key}{_loc(tuple(first['loc']))}: {first['msg']}") from None
        for name in (key, *parsed.aliases):
            other = seen.get(name.lower())
            if other is not None and other != key:
                raise TableError(f"{where}.{key}.aliases: {name!r} already names {other!r}")
            seen[name.lower()] = key
        out[key] = parsed
    return out


# --- served checkpoint names -------------------------------------------------------

# Suffixes that quantized repackagings append to the base model's name, outermost last
# (matched at the end, repeatedly): Qwen's own -AWQ / -GPTQ-Int4 / -GPTQ-Int8 / -FP8,
# Neural Magic / Red Hat AI's -FP8, -FP8-dynamic, -quantized.w4a16 / .w8a8,
# hugging-quants' -AWQ-INT4 / -GPTQ-INT4, unsloth's -bnb-4bit. precision None: a format
# whose weight size the table cannot derive (the pod must say it another way).
_QUANT_SUFFIXES: tuple[tuple[str, str | None, str], ...] = (
    (r"awq(?:[-_]int4)?", "int4", "AWQ"),
    (r"gptq[-_](?:int8|8bit)", "int8", "GPTQ"),
    (r"gptq(?:[-_](?:int4|4bit))?", "int4", "GPTQ"),
    (r"(?:quantized\.)?w4a16(?:-g128)?", "int4", "W4A16"),
    (r"(?:quantized\.)?w8a(?:8|16)", "int8", "W8A8/W8A16"),
    (r"bnb[-_]4bit|4bit|int4", "int4", "4-bit"),
    (r"8bit|int8", "int8", "8-bit"),
    (r"fp8(?:[-_](?:dynamic|static|block))?(?:[-_]kv)?", "fp8", "FP8"),
    (r"nvfp4|mxfp4|fp4", None, "FP4"),
    (r"gguf|exl2|mlx(?:-[0-9]+bit)?|hqq|aqlm", None, "GGUF/EXL2/MLX/HQQ/AQLM"),
)
_SUFFIX = re.compile(
    r"[-_.](" + "|".join(f"(?P<s{i}>{p})" for i, (p, _, _) in enumerate(_QUANT_SUFFIXES)) + r")$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Checkpoint:
    key: str  # the table row
    name: str  # the name as the pod gave it
    matched: str  # the table name it matched (a key or alias)
    precision: str | None = None  # implied by a quantization suffix
    quantization: str = ""  # the suffix's format, for the decision's text


def _strip_quantization(base: str) -> tuple[str, str | None, str, bool]:
    """(base name, precision, format label, unsized) with every quantization suffix removed."""
    precision, label, unsized = None, "", False
    while True:
        m = _SUFFIX.search(base)
        if not m:
            return base, precision, label, unsized
        i = next(int(g[1:]) for g, v in m.groupdict().items() if v is not None)
        _, p, fmt = _QUANT_SUFFIXES[i]
        if p is None:
            unsized = True
        if precision is None and not label:
            precision, label = p, fmt
        base = base[: m.start()]


def resolve_checkpoint(name: str, names: Mapping[str, str], basenames: Mapping[str, str | None]) -> Checkpoint | None:
    """The table row ``name`` serves, or None when it is not one.

    ``names`` maps every lower-cased key and alias to its key; ``basenames`` the part of
    each alias after its last "/" (None where two rows share it). Tried in turn: the name
    as given; its last path part or "org/name" (a local path such as
    /models/meta-llama/Llama-3.1-8B-Instruct); then the same with quantization suffixes
    removed. Raises UnsizedCheckpoint for a format whose weight size is unknown."""
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        return None
    text = name.strip().rstrip("/")
    parts = [p for p in text.split("/") if p]
    candidates = [text] + (["/".join(parts[-2:]), parts[-1]] if len(parts) > 1 else [])

    def find(candidate: str) -> tuple[str, str] | None:
        low = candidate.lower()
        if low in names:
            return names[low], candidate
        tail = low.rsplit("/", 1)[-1]
        key = basenames.get(tail)
        return (key, candidate) if key else None

    for candidate in candidates:
        found = find(candidate)
        if found:
            return Checkpoint(key=found[0], name=name, matched=found[1])
    base, precision, fmt, unsized = _strip_quantization(parts[-1] if parts else text)
    if base == (parts[-1] if parts else text):
        return None
    prefix = "/".join(parts[:-1])
    found = None
    for candidate in ([f"{prefix}/{base}"] if prefix else []) + [base]:
        found = find(candidate)
        if found:
            break
    if unsized:
        raise UnsizedCheckpoint(name, fmt, found[0] if found else None)
    if not found:
        return None
    return Checkpoint(key=found[0], name=name, matched=found[1], precision=precision, quantization=fmt)


def looks_quantized(name: str) -> bool:
    """Whether a name carries a quantization suffix (for the hint when it matches no row)."""
    if not isinstance(name, str) or len(name) > _MAX_NAME:
        return False
    return bool(_SUFFIX.search(name.strip().rstrip("/").rsplit("/", 1)[-1]))


def basename_index(names: Mapping[str, str]) -> dict[str, str | None]:
    """Each alias's last path part -> its key; None where two rows share one."""
    out: dict[str, str | None] = {}
    for name, key in names.items():
        tail = name.rsplit("/", 1)[-1]
        if tail in out and out[tail] != key:
            out[tail] = None
        else:
            out[tail] = key
    return out


# --- the table ---------------------------------------------------------------------


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
    max_context: int | None = None  # max_position_embeddings (of the name looked up)
    alias_max_context: Mapping[str, int] = field(default_factory=dict)  # lower-cased alias -> context
    sliding_window: int | None = None
    sliding_layers: int = 0
    mla_dim: int | None = None  # kv_lora_rank + qk_rope_head_dim
    experts: int | None = None
    active_experts: int | None = None
    weight_bytes: int | None = None  # a checkpoint published quantized (gpt-oss: MXFP4)
    weight_format: str | None = None
    # Set when a served name was resolved to this row (webhook/core/py).
    served_as: str = ""
    implied_precision: str | None = None
    quantization: str = ""


@dataclass(frozen=True)
class ArchitectureTable:
    models: Mapping[str, Architecture]
    _names: Mapping[str, str]
    _basenames: Mapping[str, str | None] = field(default_factory=dict)

    def lookup(self, name: str) -> Architecture | None:
        """A model by table key or Hugging Face repo id (case-insensitive)."""
        key = self._names.get(name.strip().lower())
        return self.models[key] if key else None

    def resolve(self, name: str) -> Architecture | None:
        """The row a served name is (repo id, local path, quantized repackaging), with the
        context of the alias it matched and the precision its name implies; None when it
        is none. Raises UnsizedCheckpoint for a format of unknown size."""
        found = resolve_checkpoint(name, self._names, self._basenames)
        if found is None:
            return None
        arch = self.models[found.key]
        context = arch.alias_max_context.get(found.matched.lower(), arch.max_context)
        return replace(
            arch,
            max_context=context,
            served_as=found.name,
            implied_precision=found.precision,
            quantization=found.quantization,
        )

    def with_rows(self, rows: Mapping[str, ArchitectureRow]) -> ArchitectureTable:
        """This table with ``rows`` added (a row of the same key replaces the built-in one)."""
        models = {k: v for k, v in self.models.items() if k not in rows}
        models.update({key: _architecture(key, row) for key, row in rows.items()})
        return _table(models)


def _architecture(key: str, row: ArchitectureRow) -> Architecture:
    return Architecture(
        key=key,
        config=row.config,
        params=row.params,
        layers=row.layers,
        kv_heads=row.kv_heads,
        head_dim=row.head_dim,
        hidden_size=row.hidden_size,
        attention_heads=row.attention_heads,
        aliases=tuple(row.aliases),
        max_context=row.max_context,
        alias_max_context={a.lower(): c for a, c in row.alias_max_context.items()},
        sliding_window=row.sliding_window,
        sliding_layers=row.sliding_layers or 0,
        mla_dim=(row.kv_lora_rank + row.qk_rope_head_dim)
        if row.kv_lora_rank is not None and row.qk_rope_head_dim is not None
        else None,
        experts=row.experts,
        active_experts=row.active_experts,
        weight_bytes=row.weight_bytes,
        weight_format=row.weight_format,
    )


def _table(models: Mapping[str, Architecture]) -> ArchitectureTable:
    names: dict[str, str] = {}
    for key, arch in models.items():
        for name in (key, *arch.aliases):
            # A later row (a policy's) takes a name an earlier (built-in) one had.
            names[name.lower()] = key
    return ArchitectureTable(models=models, _names=names, _basenames=basename_index(names))


def table_from_data(data: object) -> ArchitectureTable:
    """The table of an architectures.yaml document, every row validated by the schema the
    policy's ``architectures:`` rows also go through (ArchitectureRow)."""
    rows = validate_rows(data.get("models") if isinstance(data, dict) else None, "models")
    return _table({key: _architecture(key, row) for key, row in rows.items()})


@functools.lru_cache(maxsize=1)
def builtin_architectures() -> ArchitectureTable:
    text = resources.files("webhook.core").joinpath("data/architectures.yaml").read_text()
    return table_from_data(yaml.safe_load(text))
