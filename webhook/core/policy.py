"""The policy: which pools exist, how to estimate, what to add to a rewritten pod.

Read from YAML, validated by a pydantic schema (unknown fields are errors, so a typo
cannot silently disable a setting), then compiled into an immutable :class:`Policy`
whose lookups (catalog models, profile -> pool) are resolved once at load, not per pod.
An invalid policy raises :class:`PolicyError` naming the path of the bad field.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from webhook import settings
from webhook.core import model_table
from webhook.core.annotations import BYTES_PER_PARAM
from webhook.core.catalog import Catalog, GpuModel, MigProfile, builtin_catalog
from webhook.core.constants import PRODUCT_LABEL
from webhook.core.errors import PolicyError, TableError
from webhook.core.gpu_product import ProductLabel, parse_product_label
from webhook.core.quota import QuotaMode, share_table

# --- the file's schema -------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, strict=True)


class NodeSelectorRequirementSpec(_Spec):
    key: str = Field(min_length=1, max_length=316)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = []


class TolerationSpec(_Spec):
    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: int | None = None


class PoolSpec(_Spec):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    gpu_model: str
    profiles: list[str] | None = None
    node_selector: dict[str, str] = {}
    # The NVIDIA device plugin's MIG strategy on the pool's nodes: `mixed` exposes
    # nvidia.com/mig-<profile> resources; `single` exposes MIG devices as nvidia.com/gpu and
    # GPU feature discovery labels the node nvidia.com/gpu.product=<product>-MIG-<profile>.
    strategy: Literal["mixed", "single"] = "mixed"


class EstimateSpec(_Spec):
    default_precision: str = "fp16"
    overhead_factor: float = Field(default=1.2, ge=1.0, le=10.0)
    # Inference estimate (webhook/core/inference.py); defaults derived in README.md, "Sizing inference servers".
    # Peak activations of the engine's profiling forward pass: measured 0.18-1.38 GiB at
    # 2048-token steps on an H100 (../shared/measurements/h100-llm-memory.json); vLLM logs
    # 1.26 GiB for Llama-3-8B (vllm-project/vllm#10511). 1.5 GiB covers every figure seen.
    activation_mib: int = Field(default=1536, ge=0, le=1024 * 1024, alias="activationMiB")
    # CUDA context + cuBLAS workspace: measured 621 MiB, 717 MiB once cuBLAS ran (same file).
    runtime_overhead_mib: int = Field(default=768, ge=0, le=1024 * 1024, alias="runtimeOverheadMiB")
    # vLLM's --gpu-memory-utilization default.
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)

    @field_validator("default_precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in BYTES_PER_PARAM:
            raise ValueError(f"{value!r} is not a precision; accepted: {', '.join(BYTES_PER_PARAM)}")
        return value


class WorkloadClassSpec(_Spec):
    priority_class_name: str | None = Field(default=None, min_length=1, max_length=253)
    # The PriorityClass's own value and preemptionPolicy. Writing them beside the name
    # spares a second webhook call: the Priority admission plugin then finds nothing to
    # change, so reinvocation does not fire (see README, "Priority"). They must match the
    # PriorityClass in the cluster, or the Priority plugin refuses the pod.
    priority: int | None = Field(default=None, ge=-2147483648, le=1000000000)
    preemption_policy: Literal["PreemptLowerPriority", "Never"] | None = None
    tolerations: list[TolerationSpec] = []


def _bare_off(cls: type, value: object) -> object:
    """A `mode: off` as YAML 1.1 (PyYAML) reads it: false."""
    return "off" if value is False else value


class QuotaSpec(_Spec):
    # docs/quotas.md: off (no quota is read), warn (say when a rewrite escapes the
    # namespace's nvidia.com/gpu quota), gpu-equivalent (enforce that quota, counting each
    # MIG slice as its share of a GPU). warn and gpu-equivalent need the webhook to read
    # ResourceQuotas and pods (manifests/optional/quota).
    mode: QuotaMode = "off"
    _yaml_off = field_validator("mode", mode="before")(_bare_off)


class CapacitySpec(_Spec):
    # docs/capacity.md: off = the static choice; prefer-free = the smallest fitting profile
    # with a free slice now, read from a watch of nodes and pods (needs the RBAC of
    # manifests/optional/capacity).
    mode: Literal["off", "prefer-free"] = "off"
    _yaml_off = field_validator("mode", mode="before")(_bare_off)

    # Nothing that fits is free: keep the static choice (the pod waits), or refuse the pod.
    when_full: Literal["static", "deny"] = "static"
    # A view older than this (no successful watch event or relist) is not trusted.
    max_staleness: str = Field(default="30s", pattern=r"^[0-9]{1,5}(s|m)$")


class PolicySpec(_Spec):
    pools: list[PoolSpec] = Field(min_length=1)
    capacity: CapacitySpec = CapacitySpec()
    estimate: EstimateSpec = EstimateSpec()
    on_oversize: Literal["whole-gpu", "deny"] = "whole-gpu"
    on_invalid_annotation: Literal["deny", "ignore"] = "deny"
    node_affinity: list[NodeSelectorRequirementSpec] = []
    tolerations: list[TolerationSpec] = []
    workload_classes: dict[str, WorkloadClassSpec] = {}
    default_workload_class: str | None = None
    override_priority_class: bool = False
    # Read the serving engine's settings from the pod's command line (webhook/core/engine_args.py).
    read_engine_args: bool = True
    # Rows added to the architecture table, validated by its own schema (webhook/core/model_table.py).
    architectures: dict[str, Any] = {}
    quota: QuotaSpec = QuotaSpec()


# --- the compiled policy -----------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    name: str
    model: GpuModel
    profiles: tuple[MigProfile, ...]  # the profiles the webhook may pick, in catalog order
    node_selector: tuple[tuple[str, str], ...]
    strategy: str = "mixed"  # the device plugin's MIG strategy: "mixed" or "single"
    # For `single`: the GPU feature discovery product name the `-MIG-<profile>` label
    # extends (the pool's nvidia.com/gpu.product selector read by gpu_product, else the
    # model's first alias), and whether the selector names time-sliced/MPS-shared nodes.
    product: str = ""
    shared: bool = False

    def mig_product(self, profile: MigProfile) -> str:
        """GFD's nvidia.com/gpu.product on a single-strategy node of ``profile``:
        "<product>-MIG-<profile>[-SHARED]" (webhook/core/gpu_product.py cites GFD)."""
        return ProductLabel(self.product, profile.name, self.shared).value


@dataclass(frozen=True)
class CapacitySettings:
    mode: str = "off"  # "off" | "prefer-free"
    when_full: str = "static"  # "static" | "deny"
    max_staleness: float = 30.0  # seconds

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True)
class WorkloadClass:
    name: str
    priority_class_name: str | None
    priority: int | None
    preemption_policy: str | None
    tolerations: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Policy:
    pools: tuple[Pool, ...]
    default_precision: str
    overhead_factor: float
    on_oversize: str
    on_invalid_annotation: str
    node_affinity: tuple[dict[str, Any], ...]  # NodeSelectorRequirements, as the Pod API spells them
    tolerations: tuple[dict[str, Any], ...]
    workload_classes: Mapping[str, WorkloadClass]
    default_workload_class: str | None
    override_priority_class: bool
    # profile name -> the first pool that offers it (the `profile` annotation's rule)
    pool_by_profile: Mapping[str, tuple[Pool, MigProfile]] = field(repr=False)
    source: str = "built-in"
    # Inference estimate constants (EstimateSpec documents where they come from).
    activation_mib: int = 1536
    runtime_overhead_mib: int = 768
    gpu_memory_utilization: Fraction = Fraction(9, 10)
    read_engine_args: bool = True
    # The built-in architecture table plus the policy's `architectures:` rows; None: the
    # built-in table alone.
    architectures: model_table.ArchitectureTable | None = field(default=None, repr=False)
    quota_mode: QuotaMode = "off"
    # MIG profile -> its share of a GPU (webhook/core/quota.py), from the pools' models, and
    # from the whole catalog for profiles no pool offers (pods may ask for them by name).
    quota_shares: Mapping[str, Fraction] = field(default_factory=dict, repr=False)
    capacity: CapacitySettings = CapacitySettings()


def _requirement_dict(spec: NodeSelectorRequirementSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"key": spec.key, "operator": spec.operator}
    if spec.values:
        out["values"] = list(spec.values)
    return out


def _toleration_dict(spec: TolerationSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.key:
        out["key"] = spec.key
    out["operator"] = spec.operator
    if spec.value:
        out["value"] = spec.value
    if spec.effect:
        out["effect"] = spec.effect
    if spec.toleration_seconds is not None:
        out["tolerationSeconds"] = spec.toleration_seconds
    return out


def _check_requirement(path: str, req: NodeSelectorRequirementSpec) -> None:
    if req.operator in ("In", "NotIn") and not req.values:
        raise PolicyError(f"{path}.values: operator {req.operator} needs at least one value")
    if req.operator in ("Exists", "DoesNotExist") and req.values:
        raise PolicyError(f"{path}.values: operator {req.operator} takes no values")
    if req.operator in ("Gt", "Lt") and (len(req.values) != 1 or not req.values[0].lstrip("-").isdigit()):
        raise PolicyError(f"{path}.values: operator {req.operator} needs exactly one integer value")


def _seconds(path: str, text: str) -> float:
    seconds = int(text[:-1]) * (60 if text.endswith("m") else 1)
    if not 1 <= seconds <= 3600:
        raise PolicyError(f"{path}: {text!r} is out of range; accepted: 1s to 60m (e.g. 30s, 2m)")
    return float(seconds)


def profile_node_requirements(policy: Policy, pool: Pool, profile: MigProfile) -> list[dict[str, Any]]:
    """The required node expressions a pod rewritten to ``profile`` of ``pool`` gets (the
    mutation ANDs them into its affinity; the capacity view matches nodes with them)."""
    required = [dict(r) for r in policy.node_affinity]
    if pool.strategy == "single":
        # GFD rewrites the product label on single-strategy nodes to <product>-MIG-<profile>,
        # so the pool's plain product selector would match no MIG node: the profile-pinned
        # value replaces it rather than being AND-ed beside it.
        required += [{"key": k, "operator": "In", "values": [v]} for k, v in pool.node_selector if k != PRODUCT_LABEL]
        required.append({"key": PRODUCT_LABEL, "operator": "In", "values": [pool.mig_product(profile)]})
    else:
        required += [{"key": k, "operator": "In", "values": [v]} for k, v in pool.node_selector]
    return required


def _check_toleration(path: str, tol: TolerationSpec) -> None:
    if tol.operator == "Exists" and tol.value:
        raise PolicyError(f"{path}.value: operator Exists takes no value")
    if not tol.key and tol.operator != "Exists":
        raise PolicyError(f"{path}.operator: a toleration without a key must use operator Exists")
    if tol.toleration_seconds is not None and tol.effect != "NoExecute":
        raise PolicyError(f"{path}.tolerationSeconds: only valid with effect NoExecute")


def _compile_pool(index: int, spec: PoolSpec, catalog: Catalog) -> Pool:
    path = f"pools[{index}]"
    model = catalog.lookup(spec.gpu_model)
    if model is None:
        raise PolicyError(
            f"{path}.gpuModel: {spec.gpu_model!r} is not in the built-in catalog; "
            f"accepted: {', '.join(catalog.keys)} or their GPU feature discovery product names"
        )
    if spec.profiles is None:
        profiles = model.default_profiles
    else:
        if not spec.profiles:
            raise PolicyError(f"{path}.profiles: must list at least one profile (omit it for all)")
        chosen = []
        for i, name in enumerate(spec.profiles):
            profile = model.profile(name)
            if profile is None:
                raise PolicyError(
                    f"{path}.profiles[{i}]: {name!r} is not a MIG profile of {model.key}; "
                    f"accepted: {', '.join(p.name for p in model.profiles)}"
                )
            if profile in chosen:
                raise PolicyError(f"{path}.profiles[{i}]: {name!r} is listed twice")
            chosen.append(profile)
        # Catalog order, so selection never depends on how the file lists them.
        profiles = tuple(p for p in model.profiles if p in chosen)
    for key, value in spec.node_selector.items():
        if not key:
            raise PolicyError(f"{path}.nodeSelector: keys must not be empty")
    selected = spec.node_selector.get(PRODUCT_LABEL)
    label = parse_product_label(selected or (model.aliases[0] if model.aliases else model.key))
    if selected is not None:
        _check_product_selector(f"{path}.nodeSelector.{PRODUCT_LABEL}", selected, label, spec, model, catalog)
    return Pool(
        name=spec.name,
        model=model,
        profiles=profiles,
        node_selector=tuple(spec.node_selector.items()),
        strategy=spec.strategy,
        product=label.product,
        shared=label.shared,
    )


def _check_product_selector(
    path: str, selected: str, label: ProductLabel, spec: PoolSpec, model: GpuModel, catalog: Catalog
) -> None:
    """A pool's nvidia.com/gpu.product selector must name the pool's GPU model and a label
    GFD writes for its strategy (gpu_product.py: `<product>[-MIG-<profile>][-SHARED]`)."""
    named = catalog.lookup(selected)
    if named is not None and named.key != model.key:
        raise PolicyError(
            f"{path}: {selected!r} is a {named.key} product, not the pool's gpuModel {model.key}; "
            f"accepted: {', '.join(model.aliases) or model.key} (with -SHARED for shared nodes)"
        )
    if label.mig_profile is None:
        return
    if spec.strategy != "single":
        raise PolicyError(
            f"{path}: {selected!r} is a single-strategy label (-MIG-{label.mig_profile}); on strategy "
            f"mixed GFD labels nodes with the GPU's own product name; accepted: {label.product!r}"
        )
    if spec.profiles != [label.mig_profile]:
        raise PolicyError(
            f"{path}: {selected!r} names only {label.mig_profile} nodes; the pool's profiles must then be "
            f"exactly [{label.mig_profile}] (or select the product {label.product!r}, which every profile extends)"
        )


def _loc_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the schema accepts where ``loc`` (the path of an unknown key) points."""
    model: Any = PolicySpec
    dict_key_next = False
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if dict_key_next:  # a key of a dict field (a workload class's name)
            dict_key_next = False
            continue
        fields = {(f.alias or name): f for name, f in model.model_fields.items()}
        found = fields.get(str(part))
        if found is None:
            return []
        annotation = found.annotation
        dict_key_next = get_origin(annotation) is dict
        model = next((a for a in _type_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if model is None:
        return []
    return [(f.alias or name) for name, f in model.model_fields.items()]


def _type_args(annotation: Any) -> list[Any]:
    out = [annotation]
    for arg in get_args(annotation):
        out += _type_args(arg)
    return out


def _schema_problems(err: ValidationError) -> list[str]:
    problems = []
    for error in err.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p and "]" in p))
        message = f"{_loc_path(loc)}: {error['msg']}"
        if error["type"] == "extra_forbidden" and loc:
            close = difflib.get_close_matches(str(loc[-1]), _allowed_keys(loc), n=1)
            message += f" (did you mean {close[0]}?)" if close else ""
        problems.append(message)
    return problems


def compile_policy(data: object, source: str = "inline", catalog: Catalog | None = None) -> Policy:
    """Validate a parsed YAML document and compile it; raises PolicyError naming every
    problem found, one per line, each with the path of its field."""
    catalog = catalog or builtin_catalog()
    if not isinstance(data, dict):
        raise PolicyError(f"(top level): the policy must be a mapping, not {type(data).__name__}")
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as err:
        raise PolicyError("\n".join(_schema_problems(err))) from None

    problems: list[str] = []

    def checked(check: Callable[..., Any], *args: Any) -> Any:
        try:
            return check(*args)
        except PolicyError as err:
            problems.append(str(err))
            return None

    compiled = [checked(_compile_pool, i, p, catalog) for i, p in enumerate(spec.pools)]
    pools = tuple(p for p in compiled if p is not None)
    names = [p.name for p in spec.pools]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(f"pools[{i}].name: {name!r} is used by an earlier pool")
    for i, req in enumerate(spec.node_affinity):
        checked(_check_requirement, f"nodeAffinity[{i}]", req)
    for i, tol in enumerate(spec.tolerations):
        checked(_check_toleration, f"tolerations[{i}]", tol)

    classes = {}
    for name, wc in spec.workload_classes.items():
        for i, tol in enumerate(wc.tolerations):
            checked(_check_toleration, f"workloadClasses.{name}.tolerations[{i}]", tol)
        if (wc.priority is not None or wc.preemption_policy) and not wc.priority_class_name:
            problems.append(
                f"workloadClasses.{name}.priority: priority and preemptionPolicy describe "
                "a priorityClassName, which is missing"
            )
        classes[name] = WorkloadClass(
            name=name,
            priority_class_name=wc.priority_class_name,
            priority=wc.priority,
            preemption_policy=wc.preemption_policy,
            tolerations=tuple(_toleration_dict(t) for t in wc.tolerations),
        )
    default_class = spec.default_workload_class
    if default_class is not None and default_class not in classes:
        close = difflib.get_close_matches(default_class, list(classes), n=1)
        problems.append(
            f"defaultWorkloadClass: {default_class!r} is not a key of workloadClasses; "
            f"accepted: {', '.join(classes) or '(none defined)'}" + (f" (did you mean {close[0]}?)" if close else "")
        )
    table = None
    if spec.architectures:
        try:
            table = model_table.builtin_architectures().with_rows(
                model_table.validate_rows(spec.architectures, "architectures")
            )
        except TableError as err:
            problems.append(str(err))
    if problems:
        raise PolicyError("\n".join(problems))

    pool_by_profile: dict[str, tuple[Pool, MigProfile]] = {}
    for pool in pools:
        for profile in pool.profiles:
            pool_by_profile.setdefault(profile.name, (pool, profile))

    return Policy(
        pools=pools,
        default_precision=spec.estimate.default_precision,
        overhead_factor=spec.estimate.overhead_factor,
        on_oversize=spec.on_oversize,
        on_invalid_annotation=spec.on_invalid_annotation,
        node_affinity=tuple(_requirement_dict(r) for r in spec.node_affinity),
        tolerations=tuple(_toleration_dict(t) for t in spec.tolerations),
        workload_classes=classes,
        default_workload_class=default_class,
        override_priority_class=spec.override_priority_class,
        pool_by_profile=pool_by_profile,
        source=source,
        activation_mib=spec.estimate.activation_mib,
        runtime_overhead_mib=spec.estimate.runtime_overhead_mib,
        # Exact decimal, so "need <= 0.9 x memory" compares without float rounding.
        gpu_memory_utilization=Fraction(str(spec.estimate.gpu_memory_utilization)),
        read_engine_args=spec.read_engine_args,
        architectures=table,
        quota_mode=spec.quota.mode,
        quota_shares={**share_table(catalog.models.values()), **share_table(p.model for p in pools)},
        capacity=CapacitySettings(
            mode=spec.capacity.mode,
            when_full=spec.capacity.when_full,
            max_staleness=_seconds("capacity.maxStaleness", spec.capacity.max_staleness),
        ),
    )


def parse_policy_yaml(text: str, source: str = "inline") -> Policy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PolicyError(f"(top level): {source} is not valid YAML: {err}") from None
    return compile_policy(data, source=source)


def read_policy_file(path: str) -> tuple[str, Policy]:
    """The file's text and the policy it compiles to (the text is what was validated)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise PolicyError(f"(file): cannot read policy {path}: {err.strerror}") from None
    return text, parse_policy_yaml(text, source=path)


def load_policy(path: str) -> Policy:
    return read_policy_file(path)[1]


def default_policy_text() -> str:
    return resources.files("webhook.core").joinpath("data/default-policy.yaml").read_text()


def default_policy() -> Policy:
    return parse_policy_yaml(default_policy_text(), source="built-in")


def policy_path(path: str | None) -> str | None:
    """The policy file in force: --policy PATH, else $GPU_RIGHTSIZER_POLICY, else None (the
    built-in default)."""
    return path or settings.policy_path()


def resolve_policy(path: str | None) -> Policy:
    """--policy PATH, else $GPU_RIGHTSIZER_POLICY, else the built-in default."""
    path = policy_path(path)
    return load_policy(path) if path else default_policy()
