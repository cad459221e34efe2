"""The decision: what gpu-rightsizer does with one pod under one policy.

``decide(pod, policy)`` is a pure function of the raw pod dict (as the API server sends
it) and the compiled policy. The webhook, ``mutate``, ``plan`` and ``estimate`` all call
it; nothing else sizes a pod.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from webhook.core import annotations as ann
from webhook.core import engine_args, inference
from webhook.core.capacity import CapacityChoice, CapacityRead, prefer_free
from webhook.core.catalog import MigProfile
from webhook.core.constants import GPU_RESOURCE, MIG_RESOURCE_PREFIX, PRODUCT_LABEL
from webhook.core.errors import BadObject
from webhook.core.gpu_requests import pod_requests
from webhook.core.outcomes import Action
from webhook.core.policy import Policy, Pool, WorkloadClass
from webhook.core.quantity import parse_quantity
from webhook.core.sizing import (
    BYTES_PER_MIB,
    MemoryNeed,
    choose_pool,
    describe_excess,
    describe_fit,
    explicit_need,
    format_gib,
    largest_profile,
    weights_need,
)
from webhook.core.text import describe_value, quote_value

CONTAINER_FIELDS = ("initContainers", "containers")


@dataclass(frozen=True)
class ContainerRef:
    field: str  # "containers" or "initContainers"
    index: int
    name: str


@dataclass(frozen=True)
class Decision:
    action: Action
    # One line for the warning, the decision annotation or the denial message.
    message: str = ""
    pool: Pool | None = None
    profile: MigProfile | None = None
    need: MemoryNeed | None = None
    workload_class: WorkloadClass | None = None
    containers: tuple[ContainerRef, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    # How a capacity view chose (webhook/core/capacity.py): free | full | stale | no-view; "" when none was read.
    capacity: str = ""

    @property
    def all_warnings(self) -> tuple[str, ...]:
        """What kubectl shows: the decision's own line first, then per-container notes."""
        if self.action in ("ignore", "deny"):
            return ()
        return ((self.message,) if self.message else ()) + self.warnings

    @property
    def assigned_profile(self) -> str | None:
        if self.action == "rewrite":
            return cast(MigProfile, self.profile).name  # a rewrite always names its profile
        if self.action == "whole-gpu":
            return "whole-gpu"
        return None


def _mapping(value: object, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadObject(path, f"must be an object, not {type(value).__name__}")
    return value


def pod_annotations(pod: dict[str, Any]) -> dict[str, Any]:
    metadata = _mapping(pod.get("metadata"), "metadata")
    annotations = _mapping(metadata.get("annotations"), "metadata.annotations")
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise BadObject(f"metadata.annotations[{key[:64]!r}]", "values must be strings")
    return annotations


def gpu_count(container: dict[str, Any], path: str) -> tuple[str, Decimal | None] | None:
    """The container's nvidia.com/gpu (limits win over requests) as (text, number), or
    None when it asks for none. The number is None when the quantity does not parse."""
    resources = _mapping(container.get("resources"), f"{path}.resources")
    # Both are checked before either is read: the mutation rewrites both, so a malformed
    # `requests` beside a good `limits` is a malformed pod, not one to patch around.
    parts = [_mapping(resources.get(part), f"{path}.resources.{part}") for part in ("limits", "requests")]
    for amounts in parts:
        if GPU_RESOURCE in amounts:
            raw = amounts[GPU_RESOURCE]
            text = None
            if isinstance(raw, str):
                text = raw
            elif isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() <= 64:
                text = str(raw)
            if text is None or len(text) > 32:
                return (describe_value(raw), None)
            try:
                number = parse_quantity(text)
            except (ValueError, InvalidOperation, TypeError):
                number = None
            return (text, number if number is not None and number.is_finite() else None)
    return None


def gpu_containers(pod: dict[str, Any]) -> list[tuple[ContainerRef, str, Decimal | None]]:
    spec = _mapping(pod.get("spec"), "spec")
    found = []
    for fld in CONTAINER_FIELDS:
        containers = spec.get(fld)
        if containers is None:
            continue
        if not isinstance(containers, list):
            raise BadObject(f"spec.{fld}", "must be a list")
        for i, container in enumerate(containers):
            path = f"spec.{fld}[{i}]"
            if not isinstance(container, dict):
                raise BadObject(path, "must be an object")
            count = gpu_count(container, path)
            if count is not None:
                name = container.get("name")
                name = name if isinstance(name, str) else f"#{i}"
                found.append((ContainerRef(fld, i, name), count[0], count[1]))
    return found


def _container_label(ref: ContainerRef) -> str:
    kind = "init container" if ref.field == "initContainers" else "container"
    return f"{kind} {quote_value(ref.name, 63)}"


def _workload_class(annotations: dict[str, Any], policy: Policy) -> WorkloadClass | None:
    name = annotations.get(ann.WORKLOAD_CLASS, policy.default_workload_class)
    if name is None:
        return None
    found = policy.workload_classes.get(name)
    if found is None:
        raise ann.InvalidAnnotation(
            ann.WORKLOAD_CLASS,
            name,
            "one of " + (", ".join(policy.workload_classes) or "(none: the policy defines no workload classes)"),
        )
    return found


def estimate_need(annotations: dict[str, Any], policy: Policy) -> MemoryNeed | None:
    """The memory need the sizing annotations state, or None when only `profile` (or
    nothing) sizes the pod. Every given annotation is validated, even one a stronger
    annotation overrides, so that a typo is never silently ignored.

    Strongest first: gpu-memory; the inference estimate (context-length, with model or
    architecture; webhook/core/inference.py); model-size; model (its parameter count)."""
    model = inference.parse_model(annotations[ann.MODEL], policy.architectures) if ann.MODEL in annotations else None
    precision = policy.default_precision
    if ann.PRECISION in annotations:
        precision = ann.parse_precision(annotations[ann.PRECISION])
    elif model is not None and model.implied_precision:
        precision = model.implied_precision  # the checkpoint's name says it (...-AWQ: int4)
    params = None
    if ann.MODEL_SIZE in annotations:
        params = ann.parse_model_size(annotations[ann.MODEL_SIZE])
    explicit = None
    if ann.GPU_MEMORY in annotations:
        explicit = ann.parse_memory_bytes(annotations[ann.GPU_MEMORY])
    utilization = None
    if ann.GPU_MEMORY_UTILIZATION in annotations:
        utilization = ann.parse_utilization(annotations[ann.GPU_MEMORY_UTILIZATION])
    serving = inference.serving_settings(annotations, precision, params, model, ann.PRECISION in annotations)

    if explicit is not None:
        need = explicit_need(explicit, annotations[ann.GPU_MEMORY].strip())
    elif serving is not None:
        return inference.inference_need(
            serving,
            utilization if utilization is not None else policy.gpu_memory_utilization,
            policy.activation_mib,
            policy.runtime_overhead_mib,
        )
    elif params is not None:
        need = weights_need(params, precision, policy.overhead_factor)
    elif model is not None and inference.weights_label(model, precision, ann.PRECISION in annotations)[0]:
        need = inference.checkpoint_need(model, policy.overhead_factor)
    elif model is not None:
        # every row of the table has its parameter count
        need = weights_need(cast(int, model.params), precision, policy.overhead_factor)
    else:
        return None
    if explicit is None and any(a in annotations for a in (ann.MAX_CONCURRENCY, ann.KV_CACHE_DTYPE, ann.ARCHITECTURE)):
        # Serving settings without a context length cannot size a KV cache: say so rather
        # than let them look applied.
        need = replace(need, explanation=f"{need.explanation} (weights only: no {ann.CONTEXT_LENGTH})")
    # Outside the inference estimate the policy's default utilization does not apply (the
    # core estimate stays as it was); an explicit annotation still says what the engine takes.
    return replace(need, utilization=utilization) if utilization is not None else need


def _explicit_profile(annotations: dict[str, Any], policy: Policy) -> tuple[Pool, MigProfile] | None:
    if ann.PROFILE not in annotations:
        return None
    name = annotations[ann.PROFILE].strip()
    name = name.removeprefix(MIG_RESOURCE_PREFIX)
    found = policy.pool_by_profile.get(name)
    if found is None:
        raise ann.InvalidAnnotation(
            ann.PROFILE, annotations[ann.PROFILE], "a profile a pool offers: " + ", ".join(policy.pool_by_profile)
        )
    return found


# The message goes into the decision annotation; naming every container of a pod with
# 1,000 of them wrote a 70 KB annotation (and the API server caps all annotations of an
# object at 256 KiB together).
_MAX_NAMED_CONTAINERS = 5


def _container_list(refs: Sequence[ContainerRef]) -> str:
    names = ", ".join(_container_label(r) for r in refs[:_MAX_NAMED_CONTAINERS])
    if len(refs) > _MAX_NAMED_CONTAINERS:
        names += f" and {len(refs) - _MAX_NAMED_CONTAINERS} more containers"
    return names


def _rewrite_message(pool: Pool, profile: MigProfile, need: MemoryNeed | None, refs: Sequence[ContainerRef]) -> str:
    names = _container_list(refs)
    if need is None:
        why = f"profile {profile.name} requested by annotation {ann.PROFILE}"
    else:
        why = describe_fit(need, profile)
    if pool.strategy == "single":
        target = f"{GPU_RESOURCE}: 1 on {PRODUCT_LABEL}={pool.mig_product(profile)}"
    else:
        target = f"{GPU_RESOURCE}: 1 -> {MIG_RESOURCE_PREFIX}{profile.name}"
    return f"{target} on pool {pool.name} ({pool.model.key}) for {names}: {why}"


# Annotations that state a pod's memory need (the CEL matchConditions in manifests/ call the
# webhook for a pod that already asks for MIG slices when it carries one of them).
STATED_NEED = (ann.MODEL_SIZE, ann.GPU_MEMORY, ann.MODEL)


def _held_slices(pod: dict[str, Any], annotations: dict[str, Any], policy: Policy) -> Decision:
    """A pod that already asks for MIG slices is not rewritten; when it also states its need,
    say whether each of its slices holds it (a warning only: the pod is admitted as it is)."""
    if not any(a in annotations for a in STATED_NEED):
        return Decision("ignore")
    # App containers only, as the matchConditions select (an init container's slice is brief).
    app = {"spec": {"containers": (pod.get("spec") or {}).get("containers") or []}}
    profiles = sorted(r[len(MIG_RESOURCE_PREFIX) :] for r in pod_requests(app) if r.startswith(MIG_RESOURCE_PREFIX))
    if not profiles:
        return Decision("ignore")
    try:
        need = estimate_need(annotations, policy)
    except ann.InvalidAnnotation as err:
        return Decision("unchanged", message=f"{err}; the pod keeps its MIG request")
    if need is None:
        return Decision("ignore")
    notes = []
    for name in profiles:
        found = policy.pool_by_profile.get(name)
        resource = MIG_RESOURCE_PREFIX + name
        if found is None:
            notes.append(f"{resource}: no pool of the policy offers {name}, so whether it holds the need is unknown")
        elif need.fits(found[1]):
            notes.append(f"{resource} holds the stated need: {describe_fit(need, found[1])}")
        else:
            smallest = choose_pool(need, policy.pools)
            better = f"; {smallest.profile.name} is the smallest that does" if smallest else ""
            usable = format_gib(found[1].memory_mib * BYTES_PER_MIB)
            notes.append(
                f"{resource} ({usable} usable) does not hold the stated need: {describe_excess(need, found[1])}{better}"
            )
    return Decision("unchanged", message="; ".join(notes), need=need)


def decide(pod: dict[str, Any], policy: Policy, capacity: CapacityRead | None = None) -> Decision:
    """What to do with ``pod`` (a raw Pod dict) under ``policy``. Raises BadObject only
    for a malformed pod; invalid annotations become a deny or warning per the policy.
    With ``capacity`` and the policy's capacity mode on, a sized pod gets the smallest
    fitting profile with a free slice now (webhook/core/capacity.py)."""
    annotations = pod_annotations(pod)
    bad_skip: ann.InvalidAnnotation | None = None
    try:
        if ann.parse_skip(annotations.get(ann.SKIP)):
            return Decision("ignore")
    except ann.InvalidAnnotation as err:
        bad_skip = err  # refused below like any bad annotation, if the pod asks for a GPU
    containers = gpu_containers(pod)
    if not containers:
        return _held_slices(pod, annotations, policy)

    single = tuple(ref for ref, _, number in containers if number == 1)
    warnings = tuple(ann.unknown_keys(annotations)) + tuple(
        f"{_container_label(ref)} requests {GPU_RESOURCE}: {quote_value(text, 32)}; only "
        "exactly 1 is right-sized (a CUDA process sees one MIG device), so it keeps whole GPUs"
        for ref, text, number in containers
        if number != 1
    )

    engine = None
    sizing = annotations
    try:
        if bad_skip is not None:
            raise bad_skip
        workload_class = _workload_class(annotations, policy)
        engine = _engine_settings(pod, single, policy)
        if engine is not None:
            # The command line's settings as annotations; the pod's own annotations win.
            sizing, overrides = engine_args.merge(annotations, engine, _comparable(policy))
            warnings = engine.warnings + overrides + warnings
            if sizing.keys() == annotations.keys():
                engine = (
                    replace(engine, annotations={}) if not engine.several_gpus else engine
                )  # nothing of it sized the pod
        need = estimate_need(sizing, policy)
        explicit = _explicit_profile(annotations, policy)
    except ann.InvalidAnnotation as err:
        if policy.on_invalid_annotation == "deny":
            return Decision("deny", message=str(err))
        return Decision(
            "unchanged", message=f"{err}; pod admitted unchanged (onInvalidAnnotation: ignore)", warnings=warnings
        )

    if engine is not None and engine.several_gpus:
        return Decision("unchanged", message=engine.several_gpus, warnings=warnings)
    if not single:
        # Every GPU container asks for several GPUs (tensor parallel, say): its warning
        # says it keeps them; asking it for a sizing annotation would mislead.
        return Decision("unchanged", message="", warnings=warnings)
    if not any(a in sizing for a in ann.SIZING_ANNOTATIONS):
        hint = (
            f"no sizing annotation, so the {GPU_RESOURCE} request stays; add {ann.MODEL_SIZE} "
            f'("7b"), {ann.MODEL} ("llama-3.1-8b"), {ann.GPU_MEMORY} ("18Gi") or {ann.PROFILE}'
        )
        return Decision("unchanged", message=hint, warnings=warnings)

    noted: CapacityChoice | None = None  # the capacity view's choice, when one was read
    if explicit is not None:
        pool, profile = explicit
        sized_by = None  # the profile annotation decides; the message says so
    else:
        need = cast(MemoryNeed, need)  # without a need or a profile the pod was left unchanged above
        choice = choose_pool(need, policy.pools)
        if choice is None:
            pool, biggest = largest_profile(policy.pools)
            reason = (
                f"{describe_excess(need, biggest)} exceeds the largest MIG profile of every pool "
                f"({biggest.name} of pool {pool.name}: {format_gib(biggest.memory_mib * BYTES_PER_MIB)})"
            )
            if policy.on_oversize == "deny":
                return Decision(
                    "deny", message=_engine_note(f"{reason}; refused (onOversize: deny)", engine), need=need
                )
            return Decision(
                "whole-gpu",
                message=_engine_note(f"{reason}; keeping the whole-GPU request (onOversize: whole-gpu)", engine),
                need=need,
                containers=single,
                warnings=_beyond_whole_gpu(need, policy) + warnings,
            )
        pool, profile, sized_by = choice.pool, choice.profile, need
        if capacity is not None and policy.capacity.enabled:
            picked = prefer_free(need, policy, capacity, pod, workload_class, choice)
            if picked.deny:
                return Decision("deny", message=picked.note, need=need, capacity=picked.result)
            pool, profile, noted = picked.pool, picked.profile, picked
    message = _rewrite_message(pool, profile, sized_by, single)
    return Decision(
        "rewrite",
        message=_engine_note(
            f"{message}; capacity: {noted.note}" if noted else message, engine if explicit is None else None
        ),
        capacity=noted.result if noted else "",
        pool=pool,
        profile=profile,
        need=need,
        workload_class=workload_class,
        containers=single,
        warnings=warnings,
    )


def _engine_settings(
    pod: dict[str, Any], single: tuple[ContainerRef, ...], policy: Policy
) -> engine_args.Derived | None:
    """What the first single-GPU container's serving engine says, as annotations
    (webhook/core/engine_args.py), or None (not an engine, or the policy's readEngineArgs off)."""
    if not policy.read_engine_args:
        return None
    spec = pod.get("spec") or {}
    for ref in single:
        container = spec[ref.field][ref.index]
        reading = engine_args.read_container(container, _container_label(ref))
        # An engine's image without a flag says nothing to size by: the pod is sized by its
        # annotations, exactly as before engine reading.
        if reading is not None and (reading.values or reading.unresolved):
            return engine_args.derive(reading, (policy.architectures or inference.builtin_architectures()).resolve)
    return None


def _comparable(policy: Policy) -> Callable[[str, str], object]:
    """An annotation's value in a form two spellings compare equal in (8k == 8192)."""
    parsers: dict[str, Callable[[str], object]] = {
        ann.CONTEXT_LENGTH: ann.parse_context_length,
        ann.MAX_CONCURRENCY: ann.parse_max_concurrency,
        ann.KV_CACHE_DTYPE: lambda v: ann.KV_CACHE_BYTES.get(ann.parse_kv_cache_dtype(v), "auto"),
        ann.GPU_MEMORY_UTILIZATION: ann.parse_utilization,
        ann.PRECISION: lambda v: ann.BYTES_PER_PARAM[ann.parse_precision(v)],
        ann.MAX_BATCHED_TOKENS: ann.parse_max_batched_tokens,
        ann.ENGINE: ann.parse_engine,
        ann.MODEL: lambda v: inference.parse_model(v, policy.architectures).key,
    }

    def parse(key: str, text: str) -> object:
        return parsers[key](text) if key in parsers else text

    return parse


def _engine_note(message: str, engine: engine_args.Derived | None) -> str:
    """The decision's line with what was read from the engine's command line and which
    engine defaults applied."""
    if engine is None or not engine.annotations:
        return message
    read = ", ".join(src for key, src in engine.sources.items() if key in engine.stated and key != ann.ENGINE)
    parts = [
        f"read from the {engine_args.ENGINE_NAMES[engine.engine]} command of {engine.container}"
        + (f" ({read})" if read else "")
    ]
    return f"{message} [{'; '.join(parts + list(engine.notes))}]"


def _beyond_whole_gpu(need: MemoryNeed | None, policy: Policy) -> tuple[str, ...]:
    """A warning when not even a whole GPU of any pool's model holds the need: the
    whole-GPU request is kept, but the engine will not start on it either."""
    if need is None:
        return ()
    whole = [(pool, max(pool.model.profiles, key=lambda p: p.memory_mib)) for pool in policy.pools]
    if any(need.fits(profile) for _, profile in whole):
        return ()
    pool, biggest = max(whole, key=lambda pair: pair[1].memory_mib)
    return (
        f"even a whole GPU will not hold it: {need.gib:.1f} GiB is more than "
        f"{'' if need.utilization == 1 else f'{float(need.utilization):g} x '}"
        f"{format_gib(biggest.memory_mib * BYTES_PER_MIB)} of a whole {pool.model.key} (pool {pool.name}), so the "
        "engine will not start; lower the context or concurrency, quantize, or serve it on several GPUs",
    )
