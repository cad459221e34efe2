"""GPU quotas after the rewrite: a ResourceQuota on ``nvidia.com/gpu`` and the MIG slices
that replace the request.

The ResourceQuota admission plugin is a validating plugin: it runs after every mutating
webhook (k8s.io/apiserver's admission chain runs the mutating phase, then the validating
one), so it charges the pod as rewritten. A pod that now asks for
``nvidia.com/mig-1g.10gb`` is not charged against ``requests.nvidia.com/gpu`` at all: opting
a namespace in would lift its GPU quota. This module sees that (a warning) and, by policy,
enforces the GPU quota in GPU equivalents.

A slice's share of a GPU is its dominant share: the larger of its fraction of the GPU's
compute slices and of its memory slices. That is the part of the GPU it denies to other
instances: 7 x 1g.10gb fill an H100 (1/7 each), and so do 2 x 3g.40gb (3 of 7 compute
slices but 4 of 8 memory slices: 1/2 each), whereas a compute-only share (3/7) would let
a team holding a "1 GPU" quota take slices that no single GPU can hold together.

Everything here is pure: the view is built from plain ResourceQuota and Pod dicts (the
watcher's, a file's or a test's) and is immutable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Literal

from webhook.core.catalog import GpuModel, MigProfile
from webhook.core.constants import GPU_RESOURCE, MIG_RESOURCE_PREFIX
from webhook.core.gpu_requests import TERMINAL_PHASES, pod_requests
from webhook.core.quantity import parse_quantity

QuotaMode = Literal["off", "warn", "gpu-equivalent"]

# How a ResourceQuota can name the GPU: extended resources are only quota'd by requests
# (kubernetes.io/docs/concepts/policy/resource-quotas, "Resource quota for extended
# resources"); the other two spellings are accepted by older API servers' validation.
GPU_QUOTA_KEYS = (f"requests.{GPU_RESOURCE}", f"limits.{GPU_RESOURCE}", GPU_RESOURCE)


def _resource_of(key: str) -> str:
    """``requests.nvidia.com/mig-1g.10gb`` -> ``nvidia.com/mig-1g.10gb``."""
    for prefix in ("requests.", "limits."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def quota_amount(value: object) -> Fraction | None:
    """A quota or request amount ("2", 4, "500m") as an exact number; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    try:
        number = parse_quantity(str(value))
    except (ValueError, InvalidOperation, TypeError):
        return None
    if not isinstance(number, Decimal) or not number.is_finite() or number < 0:
        return None
    return Fraction(number)


def profile_share(profile: MigProfile, compute_slices: int, memory_slices: int) -> Fraction:
    """The dominant share of a GPU that one instance of ``profile`` takes."""
    return max(Fraction(profile.compute_slices, compute_slices), Fraction(profile.placement_size, memory_slices))


def share_table(models: Iterable[GpuModel]) -> dict[str, Fraction]:
    """MIG profile name -> its share of a GPU, over ``models``. A name several of them
    share with different shapes (1g.10gb is 1 memory slice of 8 on an H100 but 2 on an A100
    40GB) gets the largest share, so a slice is never counted as less of a GPU than it may
    be. The policy builds its table from its pools' models (Policy.quota_shares)."""
    shares: dict[str, Fraction] = {}
    for model in models:
        for profile in model.profiles:
            share = profile_share(profile, model.compute_slices, model.memory_slices)
            shares[profile.name] = max(share, shares.get(profile.name, Fraction(0)))
    return shares


def format_gpus(amount: Fraction) -> str:
    """1 -> "1", 6/7 -> "6/7 (0.86)"."""
    if amount.denominator == 1:
        return str(amount.numerator)
    return f"{amount.numerator}/{amount.denominator} ({float(amount):.2f})"


@dataclass(frozen=True)
class GpuQuota:
    """One ResourceQuota's cap on whole GPUs."""

    namespace: str
    name: str
    key: str  # the spec.hard key, e.g. requests.nvidia.com/gpu
    hard: Fraction


@dataclass(frozen=True)
class Usage:
    """What a namespace's non-terminal pods request: whole GPUs and MIG slices per profile."""

    whole_gpus: Fraction = Fraction(0)
    slices: Mapping[str, int] = field(default_factory=dict)

    def gpu_equivalents(self, shares: Mapping[str, Fraction]) -> Fraction:
        # A profile the catalog does not know counts as a whole GPU: never less than it may be.
        return self.whole_gpus + sum(
            (n * shares.get(p, Fraction(1)) for p, n in self.slices.items()), start=Fraction(0)
        )

    def describe(self, shares: Mapping[str, Fraction]) -> str:
        parts = [f"{format_gpus(self.whole_gpus)} x {GPU_RESOURCE}"] if self.whole_gpus else []
        parts += [
            f"{n} x {p} at {format_gpus(shares.get(p, Fraction(1)))}" for p, n in sorted(self.slices.items()) if n
        ]
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class QuotaView:
    """The GPU quotas of every namespace, which MIG resources some quota already caps there,
    and what the namespace's pods use: one immutable snapshot."""

    gpu_quotas: Mapping[str, tuple[GpuQuota, ...]]
    mig_capped: Mapping[str, frozenset[str]]
    usage: Mapping[str, Usage]


def build_quota_view(quotas: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> QuotaView:
    """The view of ``quotas`` (ResourceQuota dicts) and ``pods`` (Pod dicts, any phase)."""
    held = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        if isinstance(namespace, str) and not (isinstance(status, dict) and status.get("phase") in TERMINAL_PHASES):
            held.append((namespace, pod_requests(dict(pod)).items()))
    return quota_view(quotas, held)


def quota_view(quotas: Iterable[Mapping[str, Any]], held: Iterable[tuple[str, Iterable[tuple[str, int]]]]) -> QuotaView:
    """The view of ``quotas`` and of what live pods hold: (namespace, (resource, count)...)
    per pod, as webhook/core/gpu_requests.py reads them (the watcher keeps them so).

    Scoped quotas (``scopes`` or ``scopeSelector``) charge only the pods their scope
    selects; they are left out, and docs/quotas.md says so."""
    gpu_quotas: dict[str, list[GpuQuota]] = {}
    mig_capped: dict[str, set[str]] = {}
    for quota in quotas:
        metadata = quota.get("metadata") or {}
        spec = quota.get("spec") or {}
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str) or not isinstance(spec, dict):
            continue
        if spec.get("scopes") or spec.get("scopeSelector"):
            continue
        hard = spec.get("hard") or {}
        if not isinstance(hard, dict):
            continue
        for key, value in hard.items():
            resource = _resource_of(str(key))
            if key in GPU_QUOTA_KEYS:
                cap = quota_amount(value)
                if cap is not None:
                    gpu_quotas.setdefault(namespace, []).append(GpuQuota(namespace, name, key, cap))
            elif resource.startswith(MIG_RESOURCE_PREFIX):
                mig_capped.setdefault(namespace, set()).add(resource)

    whole: dict[str, int] = {}
    slices: dict[str, dict[str, int]] = {}
    for namespace, requests in held:
        for resource, count in requests:
            if resource == GPU_RESOURCE:
                whole[namespace] = whole.get(namespace, 0) + count
            elif resource.startswith(MIG_RESOURCE_PREFIX):
                per_ns = slices.setdefault(namespace, {})
                profile = resource[len(MIG_RESOURCE_PREFIX) :]
                per_ns[profile] = per_ns.get(profile, 0) + count
    return QuotaView(
        gpu_quotas={ns: tuple(qs) for ns, qs in gpu_quotas.items()},
        mig_capped={ns: frozenset(rs) for ns, rs in mig_capped.items()},
        usage={ns: Usage(Fraction(whole.get(ns, 0)), slices.get(ns, {})) for ns in set(whole) | set(slices)},
    )


@dataclass(frozen=True)
class QuotaVerdict:
    """What the quota check adds to a rewrite: nothing, a warning, or a refusal."""

    warning: str = ""
    refusal: str = ""


def check_rewrite(
    namespace: str,
    profile: str,
    slices: int,
    view: QuotaView | None,
    mode: QuotaMode,
    shares: Mapping[str, Fraction],
) -> QuotaVerdict:
    """The quota verdict on a pod of ``namespace`` rewritten to ``slices`` x ``profile``
    (mixed strategy: the pod now requests nvidia.com/mig-<profile> instead of a GPU)."""
    if mode == "off":
        return QuotaVerdict()
    if view is None:
        return QuotaVerdict(
            warning="GPU quota not checked: no current view of the namespace's ResourceQuotas and pods "
            "(the webhook is starting, or cannot reach the API server)"
        )
    quotas = view.gpu_quotas.get(namespace, ())
    resource = MIG_RESOURCE_PREFIX + profile
    if not quotas or resource in view.mig_capped.get(namespace, frozenset()):
        return QuotaVerdict()
    strictest = min(quotas, key=lambda q: q.hard)
    capped = f"ResourceQuota {strictest.name} caps {strictest.key} at {format_gpus(strictest.hard)} in {namespace}"
    if mode == "warn":
        return QuotaVerdict(
            warning=f"{capped}, and no ResourceQuota there caps {resource}: this pod is not counted against "
            "that GPU quota (policy quota.mode: gpu-equivalent enforces it in GPU equivalents)"
        )
    share = shares.get(profile, Fraction(1))
    usage = view.usage.get(namespace, Usage())
    used = usage.gpu_equivalents(shares)
    adds = slices * share
    if used + adds > strictest.hard:
        return QuotaVerdict(
            refusal=f"{capped}: in use {format_gpus(used)} GPU ({usage.describe(shares)}), this pod adds "
            f"{format_gpus(adds)} ({slices} x {resource} at {format_gpus(share)} of a GPU each), "
            f"{format_gpus(used + adds)} > {format_gpus(strictest.hard)}; refused (quota.mode: gpu-equivalent)"
        )
    return QuotaVerdict(
        warning=f"counted as {format_gpus(adds)} GPU against ResourceQuota {strictest.name} "
        f"({format_gpus(used + adds)} of {format_gpus(strictest.hard)} in use with this pod)"
    )


def mig_quota_items(gpu_quota: Fraction, profiles: Iterable[MigProfile]) -> dict[str, int]:
    """``requests.nvidia.com/mig-<profile>`` -> how many slices of it ``gpu_quota`` GPUs
    hold (instances per GPU x GPUs, rounded down): the stock quota plugin's per-profile
    bound. It caps each profile alone; slices of several profiles together can still add
    up to more than ``gpu_quota`` GPUs (docs/quotas.md)."""
    items: dict[str, int] = {}
    for profile in profiles:
        key = f"requests.{MIG_RESOURCE_PREFIX}{profile.name}"
        bound = int(gpu_quota * profile.max_instances)
        items[key] = max(items.get(key, 0), bound)
    return items
