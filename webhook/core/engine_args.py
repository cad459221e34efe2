"""A serving engine's own settings, read from the pod's container command, args and env.

vLLM, SGLang and Hugging Face TGI are recognised from the container's command line
(``vllm serve MODEL``, ``python -m vllm.entrypoints.openai.api_server``, ``python -m
sglang.launch_server``, ``text-generation-launcher``; also inside ``sh -c "..."``) or, when
the pod only gives args, from the engine's published image (``vllm/vllm-openai``,
``ghcr.io/huggingface/text-generation-inference``). What they say is turned into the
*annotations* that say the same thing (``--max-model-len 8192`` is ``context-length:
"8192"``), so the one decision — webhook.core.decision.estimate_need — sizes both faces: no
sizing arithmetic lives here. An annotation the pod sets wins over its flag; a
disagreement is reported. docs/engine-flags.md is the user's description.

Pure: no I/O, no Kubernetes client.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeVar

from webhook.core import annotations as ann
from webhook.core.errors import InvalidSetting as InvalidSetting  # ``engine_args.InvalidSetting``
from webhook.core.errors import UnsizedCheckpoint
from webhook.core.model_table import Architecture
from webhook.core.text import quote_value

ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "tgi": "TGI"}
_MAX_TOKENS = 4096  # tokens of one container's command line we look at
_MAX_TOKEN_TEXT = 4096
_MAX_SCRIPT = 64 * 1024


# --- flag tables ---------------------------------------------------------------------
# field -> the flags (and TGI env variables) that set it, per engine. Sources: vLLM
# `vllm serve --help` (docs.vllm.ai, "Engine Arguments"), SGLang "Server Arguments"
# (docs.sglang.ai), TGI "text-generation-launcher arguments" (huggingface.co/docs/
# text-generation-inference/basic_tutorials/launcher), each flag's [env: ...] name.

Flags = dict[str, tuple[str, ...]]  # field -> the flags that set it

_VLLM: Flags = {
    "model": ("--model",),
    "context": ("--max-model-len",),
    "seqs": ("--max-num-seqs",),
    "utilization": ("--gpu-memory-utilization",),
    "kv_dtype": ("--kv-cache-dtype",),
    "quantization": ("--quantization", "-q"),
    "dtype": ("--dtype",),
    "tp": ("--tensor-parallel-size", "-tp"),
    "pp": ("--pipeline-parallel-size", "-pp"),
    "dp": ("--data-parallel-size", "-dp"),
    "batched": ("--max-num-batched-tokens",),
}
_SGLANG: Flags = {
    "model": ("--model-path", "--model"),
    "context": ("--context-length",),
    "seqs": ("--max-running-requests",),
    "utilization": ("--mem-fraction-static",),
    "kv_dtype": ("--kv-cache-dtype",),
    "quantization": ("--quantization",),
    "dtype": ("--dtype",),
    "tp": ("--tp-size", "--tp", "--tensor-parallel-size"),
    "pp": ("--pp-size", "--pipeline-parallel-size"),
    "dp": ("--dp-size", "--dp", "--data-parallel-size"),
    "batched": ("--chunked-prefill-size",),
}
_TGI: Flags = {
    "model": ("--model-id",),
    "context": ("--max-total-tokens",),
    "seqs": ("--max-concurrent-requests",),
    "batch_total": ("--max-batch-total-tokens",),
    "utilization": ("--cuda-memory-fraction",),
    "kv_dtype": ("--kv-cache-dtype",),
    "quantization": ("--quantize",),
    "dtype": ("--dtype",),
    "tp": ("--num-shard",),
    "batched": ("--max-batch-prefill-tokens",),
}
FLAGS: dict[str, Flags] = {"vllm": _VLLM, "sglang": _SGLANG, "tgi": _TGI}
# TGI reads each launcher flag from the environment too (clap's env): --max-total-tokens
# is MAX_TOTAL_TOKENS. A flag on the command line wins over its variable.
_TGI_ENV = {f: tuple(n.lstrip("-").replace("-", "_").upper() for n in names) for f, names in _TGI.items()}

# Weight precision a quantization method stores (the annotation's vocabulary). Methods
# whose width depends on the checkpoint (gptq 4 or 8 bit, compressed-tensors, bitsandbytes
# 4 or 8 bit) defer to a precision the model name implies, else take the value here.
_QUANT_PRECISION: dict[str, str | None] = {
    # vLLM --quantization / SGLang --quantization
    "awq": "int4",
    "awq_marlin": "int4",
    "gptq": "int4",
    "gptq_marlin": "int4",
    "gptq_marlin_24": "int4",
    "marlin": "int4",
    "bitsandbytes": "int4",
    "gguf": None,
    "moe_wna16": "int4",
    "qoq": "int4",
    "fp8": "fp8",
    "fbgemm_fp8": "fp8",
    "modelopt": "fp8",
    "ptpc_fp8": "fp8",
    "w8a8_fp8": "fp8",
    "fp_quant": None,
    "experts_int8": "int8",
    "w8a8_int8": "int8",
    "compressed-tensors": None,
    "mxfp4": None,
    "modelopt_fp4": None,
    "nvfp4": None,
    # TGI --quantize
    "eetq": "int8",
    "bitsandbytes-nf4": "int4",
    "bitsandbytes-fp4": "int4",
    "exl2": None,
}
# Methods whose width the checkpoint decides (the name's precision wins when it has one).
_CHECKPOINT_DECIDES = {"gptq", "gptq_marlin", "bitsandbytes", "compressed-tensors", "moe_wna16", "marlin"}
_DTYPE: dict[str, str | None] = {
    "auto": None,
    "half": "fp16",
    "float16": "fp16",
    "fp16": "fp16",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float": "fp32",
    "float32": "fp32",
    "fp32": "fp32",
}
# KV cache dtype spellings -> the annotation's: vLLM fp8_inc (Intel Gaudi) and fp8_ds_mla
# are fp8 (1 byte); TGI's fp8_e4m3fn is fp8_e4m3.
_KV_DTYPE = {
    "auto": "auto",
    "fp8": "fp8",
    "fp8_e4m3": "fp8_e4m3",
    "fp8_e5m2": "fp8_e5m2",
    "fp8_inc": "fp8",
    "fp8_ds_mla": "fp8",
    "fp8_e4m3fn": "fp8_e4m3",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float16": "fp16",
    "fp16": "fp16",
    "half": "fp16",
}
_ENGINE_CONTEXT_FLAG = {"vllm": "--max-model-len", "sglang": "--context-length", "tgi": "--max-total-tokens"}
_ENGINE_SEQS_FLAG = {"vllm": "--max-num-seqs", "sglang": "--max-running-requests", "tgi": "--max-concurrent-requests"}

# vLLM's human-readable integers (arg_utils.human_readable_int): 1k = 1000, 1K = 1024,
# 25.6k = 25600 (a decimal takes a decimal suffix); -1 or auto: fit what memory allows.
_HUMAN_INT = re.compile(r"^([0-9]{1,9})(?:\.([0-9]{1,6}))?([kKmMgG]?)$")
_INT = re.compile(r"^[0-9]{1,9}$")
_UNRESOLVED = re.compile(r"\$\(|\$\{|\$[A-Za-z_]")


@dataclass(frozen=True)
class EngineReading:
    """What one container's engine settings say, as flag texts by field."""

    engine: str  # "vllm", "sglang", "tgi"
    container: str  # the container's label for messages: container "vllm"
    values: dict[str, tuple[str, str]] = field(default_factory=dict)  # field -> (flag or env shown, value)
    unresolved: tuple[str, ...] = ()  # flags whose value is a variable the webhook cannot see


@dataclass(frozen=True)
class Derived:
    """The annotations a reading stands for, and what the decision should say about them."""

    engine: str
    container: str
    annotations: dict[str, str]
    sources: dict[str, str]  # annotation -> "--max-model-len 32768" (what it was read from)
    stated: frozenset[str] = frozenset()  # annotations a flag states (not an engine default)
    notes: tuple[str, ...] = ()  # defaults applied, things not sized
    warnings: tuple[str, ...] = ()  # unreadable values
    model_warning: str | None = None  # the served model is not one the table can size
    several_gpus: str | None = None  # a message when the engine runs on more than one GPU


# --- recognising the engine ------------------------------------------------------------


def _strings(value: object) -> list[str] | None:
    if not isinstance(value, list) or len(value) > _MAX_TOKENS:
        return None
    if not all(isinstance(v, str) and len(v) <= _MAX_TOKEN_TEXT for v in value):
        return None
    return value


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's literal env values (valueFrom and envFrom are not visible here)."""
    env = container.get("env")
    out: dict[str, str] = {}
    if isinstance(env, list):
        for item in env[:_MAX_TOKENS]:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str):
                out[item["name"]] = item["value"][:_MAX_TOKEN_TEXT]
    return out


_KUBE_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_kube_refs(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command and args from the container's env ($$ is a
    literal $; an undefined reference stays as written)."""

    def sub(m: re.Match[str]) -> str:
        whole: str = m.group(0)
        if whole == "$$":
            return "$"
        return env.get(m.group(1), whole)

    return _KUBE_REF.sub(sub, text)


_SHELLS = {"sh", "bash", "dash", "ash", "zsh"}
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}


def _shell_commands(tokens: list[str]) -> list[list[str]] | None:
    """The commands of `sh -c "script"` (split at ; && || | and newlines), or None when
    ``tokens`` is not a shell running a script. A script shlex cannot split is None too."""
    if not tokens or tokens[0].rsplit("/", 1)[-1] not in _SHELLS:
        return None
    for i, token in enumerate(tokens[1:], start=1):
        if token.startswith("-") and not token.startswith("--") and "c" in token[1:] and i + 1 < len(tokens):
            script = tokens[i + 1]
            break
    else:
        return None
    if len(script) > _MAX_SCRIPT:
        return None
    try:
        lexer = shlex.shlex(script.replace("\\\n", " ").replace("\n", " ; "), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        return None
    commands: list[list[str]] = []
    current: list[str] = []
    for word in words[:_MAX_TOKENS]:
        if word in _SEPARATORS or set(word) <= set(";&|()"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(word)
    if current:
        commands.append(current)
    return commands


def _strip_launchers(tokens: list[str], env: dict[str, str]) -> list[str]:
    """`exec`, `env A=B`, `A=B` prefixes, `nohup`, `uv run` removed (assignments kept in env)."""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        base = token.rsplit("/", 1)[-1]
        if base in ("exec", "nohup", "env", "time", "stdbuf"):
            i += 1
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            name, _, value = token.partition("=")
            env[name] = value
            i += 1
        elif base == "uv" and i + 1 < len(tokens) and tokens[i + 1] == "run":
            i += 2
        else:
            break
    return tokens[i:]


def _engine_of(tokens: list[str]) -> tuple[str, list[str], str | None] | None:
    """(engine, its argument tokens, positional model) when ``tokens`` launch one."""
    for i, word in enumerate(tokens):
        base = word.rsplit("/", 1)[-1]
        rest = tokens[i + 1 :]
        if base == "vllm" and rest[:1] == ["serve"]:
            args = rest[1:]
            model = args[0] if args and not args[0].startswith("-") else None
            return "vllm", args[1:] if model else args, model
        if word == "-m" and rest:
            module = rest[0]
            if module in ("vllm.entrypoints.openai.api_server", "vllm.entrypoints.api_server"):
                return "vllm", rest[1:], None
            if module in ("sglang.launch_server", "sglang_router.launch_server"):
                return "sglang", rest[1:], None
            if module == "vllm.entrypoints.cli.main" and rest[1:2] == ["serve"]:
                args = rest[2:]
                model = args[0] if args and not args[0].startswith("-") else None
                return "vllm", args[1:] if model else args, model
        if base == "text-generation-launcher":
            return "tgi", rest, None
    return None


def _image_engine(image: object) -> str | None:
    """The engine whose published image runs it as its entrypoint."""
    if not isinstance(image, str):
        return None
    repo = image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in image else image.split(":", 1)[0]
    repo = repo.lower()
    if repo.endswith("vllm/vllm-openai") or repo.endswith("/vllm-openai"):
        return "vllm"
    if repo.endswith("huggingface/text-generation-inference"):
        return "tgi"
    return None


def recognise(container: Mapping[str, Any]) -> tuple[str, list[str], str | None, dict[str, str]] | None:
    """(engine, argument tokens, positional model, env) of a container, or None."""
    env = container_env(container)
    command = _strings(container.get("command")) if container.get("command") is not None else []
    args = _strings(container.get("args")) if container.get("args") is not None else []
    if command is None or args is None:
        return None
    tokens = [expand_kube_refs(t, env) for t in command + args]
    candidates = _shell_commands(tokens) or [tokens]
    for candidate in candidates:
        found = _engine_of(_strip_launchers(list(candidate), env))
        if found:
            return (*found, env)
    if not command:
        engine = _image_engine(container.get("image"))
        if engine == "vllm":
            # vllm/vllm-openai's entrypoint is `vllm serve` (older: the api_server module):
            # a first argument that is not a flag is the model.
            model = tokens[0] if tokens and not tokens[0].startswith("-") else None
            return "vllm", tokens[1:] if model else tokens, model, env
        if engine == "tgi":
            return "tgi", tokens, None, env
    return None


def _flag_values(tokens: list[str], table: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, str]]:
    """field -> (flag as written, value) for the known flags; the last occurrence wins, as
    argparse and clap do. `--flag value` and `--flag=value`; unknown flags are skipped."""
    by_name = {name: f for f, names in table.items() for name in names}
    # argparse accepts underscores for dashes in vLLM's flags (--max_model_len): both spellings.
    by_name.update({"--" + name[2:].replace("-", "_"): f for name, f in list(by_name.items()) if name.startswith("--")})
    out: dict[str, tuple[str, str]] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, eq, value = token.partition("=")
        fld = by_name.get(name) if token.startswith("-") else None
        if fld is None:
            i += 1
            continue
        if eq:
            out[fld] = (name, value)
            i += 1
        elif i + 1 < len(tokens):
            out[fld] = (name, tokens[i + 1])
            i += 2
        else:
            out[fld] = (name, "")
            i += 1
    return out


def read_container(container: Mapping[str, Any], label: str) -> EngineReading | None:
    found = recognise(container)
    if found is None:
        return None
    engine, tokens, positional, env = found
    values: dict[str, tuple[str, str]] = {}
    if engine == "tgi":
        for fld, names in _TGI_ENV.items():
            for name in names:
                if name in env:
                    values[fld] = (name, env[name])
    values.update(_flag_values(tokens, FLAGS[engine]))
    if positional is not None and "model" not in values:
        values["model"] = ("vllm serve", positional)
    unresolved = tuple(f"{flag} {quote_value(v, 40)}" for flag, v in values.values() if _UNRESOLVED.search(v))
    values = {f: fv for f, fv in values.items() if not _UNRESOLVED.search(fv[1])}
    return EngineReading(engine=engine, container=label, values=values, unresolved=unresolved)


# --- values -> annotations -------------------------------------------------------------


def _positive_int(
    reading: EngineReading, fld: str, human: bool = False, limit: int = ann.MAX_CONTEXT_TOKENS
) -> int | None:
    if fld not in reading.values:
        return None
    flag, text = reading.values[fld]
    value = text.strip()
    accepted = f"a whole number from 1 to {limit}"
    if human:
        accepted += " (vLLM also reads 32k = 32000, 32K = 32768, 25.6k, 1m, 1M, and -1 or auto)"
        if value.lower() in ("-1", "auto"):
            return None
        m = _HUMAN_INT.match(value)
        number = None
        if m and not (m.group(2) and m.group(3) not in ("k", "m", "g")):
            scale = {"": 1, "k": 10**3, "K": 2**10, "m": 10**6, "M": 2**20, "g": 10**9, "G": 2**30}[m.group(3)]
            whole = Fraction(f"{m.group(1)}.{m.group(2) or 0}") * scale
            number = int(whole) if whole.denominator == 1 else None
    else:
        number = int(value) if _INT.match(value) else None
    if number is None or not 1 <= number <= limit:
        raise InvalidSetting(_where(reading), flag, text, accepted)
    return number


_V = TypeVar("_V")


def _where(reading: EngineReading) -> str:
    return f"the {ENGINE_NAMES[reading.engine]} command of {reading.container}"


def _choice(reading: EngineReading, fld: str, mapping: Mapping[str, _V]) -> tuple[str, _V] | None:
    """(the value as written, lower-cased, its mapping) for a choice flag."""
    if fld not in reading.values:
        return None
    flag, text = reading.values[fld]
    key = text.strip().lower()
    if key not in mapping:
        raise InvalidSetting(_where(reading), flag, text, "one of " + ", ".join(mapping))
    return key, mapping[key]


def _utilization(reading: EngineReading) -> Fraction | None:
    if "utilization" not in reading.values:
        return None
    flag, text = reading.values["utilization"]
    try:
        return ann.parse_utilization(text, flag)
    except ann.InvalidAnnotation as err:
        raise InvalidSetting(_where(reading), flag, text, err.accepted) from None


def _shown(reading: EngineReading, fld: str) -> str:
    flag, value = reading.values[fld]
    return f"{flag}={value}" if flag.isupper() else f"{flag} {value}"


def derive(reading: EngineReading, resolve: Callable[[str], Architecture | None]) -> Derived:
    """The annotations ``reading`` stands for. ``resolve(name)`` is the policy's table
    lookup (model_table.ArchitectureTable.resolve). Every value is validated here, with the
    flag's name in the message; a model the table does not know is a warning, not an
    error (the pod is then sized by its annotations, as without engine reading)."""
    engine = ENGINE_NAMES[reading.engine]
    out: dict[str, str] = {ann.ENGINE: reading.engine}
    sources: dict[str, str] = {ann.ENGINE: f"{engine} command line"}
    notes: list[str] = []
    warnings: list[str] = [
        f"{reading.container}: {flag} is a variable the webhook cannot see at admission; it is not read"
        for flag in reading.unresolved
    ]

    context = _positive_int(reading, "context", human=reading.engine == "vllm")
    seqs = _positive_int(reading, "seqs", limit=10**9)
    batched = _positive_int(reading, "batched", limit=10**9)
    batch_total = _positive_int(reading, "batch_total", limit=10**12)
    parallel = {f: _positive_int(reading, f, limit=65536) for f in ("tp", "pp", "dp")}
    utilization = _utilization(reading)
    kv = _choice(reading, "kv_dtype", _KV_DTYPE)
    quant = _choice(reading, "quantization", {**_QUANT_PRECISION, "none": None})
    dtype = _choice(reading, "dtype", _DTYPE)

    gpus = 1
    for f, n in parallel.items():
        gpus *= n or 1
    several = None
    if gpus > 1:
        shown = ", ".join(_shown(reading, f) for f, n in parallel.items() if n and n > 1)
        several = (
            f"{reading.container} runs {engine} with {shown}: it uses {gpus} GPUs, and a CUDA process "
            "sees one MIG device, so the pod keeps its whole-GPU request"
        )

    arch = None
    model_warning = None
    if "model" in reading.values:
        flag, name = reading.values["model"]
        try:
            arch = resolve(name) if name.strip() else None
        except UnsizedCheckpoint as err:
            model_warning = f"{engine} serves {quote_value(name)} ({reading.container}): {err}"
        else:
            if arch is None:
                model_warning = (
                    f"{engine} serves {quote_value(name)} ({reading.container}), which the architecture table "
                    f"does not know: set {ann.MODEL} to its base model, or {ann.MODEL_SIZE} with {ann.ARCHITECTURE}, "
                    "or add it under the policy's architectures:"
                )
            else:
                out[ann.MODEL] = name.strip()
                sources[ann.MODEL] = _shown(reading, "model")

    if context is not None:
        out[ann.CONTEXT_LENGTH] = str(context)
        sources[ann.CONTEXT_LENGTH] = _shown(reading, "context")
    elif arch is not None and arch.max_context is not None:
        out[ann.CONTEXT_LENGTH] = str(arch.max_context)
        sources[ann.CONTEXT_LENGTH] = f"{engine}'s default {_ENGINE_CONTEXT_FLAG[reading.engine]}"
        notes.append(
            f"context {arch.max_context}: {engine}'s default {_ENGINE_CONTEXT_FLAG[reading.engine]}, the model's "
            f"max_position_embeddings ({arch.config})"
        )

    if kv is not None:
        out[ann.KV_CACHE_DTYPE] = kv[1]
        sources[ann.KV_CACHE_DTYPE] = _shown(reading, "kv_dtype")
    if utilization is not None:
        out[ann.GPU_MEMORY_UTILIZATION] = reading.values["utilization"][1].strip()
        sources[ann.GPU_MEMORY_UTILIZATION] = _shown(reading, "utilization")
    if batched is not None:
        out[ann.MAX_BATCHED_TOKENS] = str(batched)
        sources[ann.MAX_BATCHED_TOKENS] = _shown(reading, "batched")

    precision, why = _precision(reading, quant, dtype, arch)
    if precision is not None:
        out[ann.PRECISION] = precision
        sources[ann.PRECISION] = why

    if ann.CONTEXT_LENGTH in out:
        asked = f"; {_shown(reading, 'seqs')} is not reserved" if seqs is not None else ""
        notes.append(
            f"sized for 1 sequence of the full context, what {engine} needs to start{asked} "
            f"(set {ann.MAX_CONCURRENCY} to size for more)"
        )
    if batch_total is not None:
        notes.append(f"{_shown(reading, 'batch_total')} is not reserved (TGI fits its batch to the memory it finds)")
    stated = frozenset(
        k
        for k, src in sources.items()
        if src.startswith("-") or src.split("=")[0].isupper() or src.startswith("vllm serve")
    )
    return Derived(
        engine=reading.engine,
        container=reading.container,
        annotations=out,
        sources=sources,
        stated=stated,
        notes=tuple(notes),
        warnings=tuple(warnings),
        model_warning=model_warning,
        several_gpus=several,
    )


def _precision(
    reading: EngineReading,
    quant: tuple[str, str | None] | None,
    dtype: tuple[str, str | None] | None,
    arch: Architecture | None,
) -> tuple[str | None, str]:
    """The weight precision the flags give, and what it was read from; None leaves it to
    the name (…-AWQ), the row's own checkpoint (gpt-oss) or the policy's default."""
    if quant is not None and quant[0] != "none":
        method, precision = quant
        if method in _CHECKPOINT_DECIDES and arch is not None and arch.implied_precision:
            return arch.implied_precision, f"{_shown(reading, 'quantization')} of a {arch.quantization} checkpoint"
        if precision is None:
            if arch is not None and arch.weight_format and method in ("mxfp4",):
                return None, ""
            if arch is not None and arch.implied_precision:
                return arch.implied_precision, f"the {arch.quantization} checkpoint name"
            raise InvalidSetting(
                _where(reading),
                reading.values["quantization"][0],
                reading.values["quantization"][1],
                "a quantization whose weight size the webhook knows: "
                + ", ".join(k for k, v in _QUANT_PRECISION.items() if v)
                + f" (or set {ann.PRECISION} for this checkpoint)",
            )
        return precision, _shown(reading, "quantization")
    if arch is not None and (arch.implied_precision or arch.weight_format):
        return None, ""
    if dtype is not None and dtype[1] is not None:
        return dtype[1], _shown(reading, "dtype")
    if arch is not None:
        # No quantization: the engine loads the checkpoint in its own dtype, bf16 for
        # every row of the table (config.json torch_dtype).
        return "bf16", "the checkpoint's dtype (no quantization flag)"
    return None, ""


# --- the pod ---------------------------------------------------------------------------


def merge(
    annotations: Mapping[str, Any], derived: Derived, parse: Callable[[str, str], object]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The pod's annotations over the derived ones, and a warning for each annotation that
    overrides a flag saying something else. ``parse(annotation, text)`` gives a comparable
    value (the annotation parsers), raising InvalidAnnotation for a bad one (then the
    comparison is left to the decision, which reports the bad value)."""
    merged = {**derived.annotations, **annotations}
    if ann.MODEL not in merged and ann.ARCHITECTURE not in merged:
        # Nothing says which model: the flags cannot size the pod (a context length
        # without layers and heads is no KV cache); it is sized by its annotations alone.
        merged = dict(annotations)
    notes: tuple[str, ...] = ()
    if derived.model_warning and not any(a in annotations for a in (*ann.SIZING_ANNOTATIONS, ann.ARCHITECTURE)):
        notes = (derived.model_warning,)
    overrides: list[str] = []
    for key, text in derived.annotations.items():
        if key not in annotations or key not in derived.stated:
            continue
        try:
            same = parse(key, annotations[key]) == parse(key, text)
        except ann.InvalidAnnotation:
            continue
        if not same:
            short = key.removeprefix(ann.PREFIX)
            overrides.append(
                f"{short} {annotations[key].strip()[:64]} overrides {derived.sources[key]} "
                f"({derived.container}): the pod is sized by the annotation"
            )
    return merged, notes + tuple(overrides)
