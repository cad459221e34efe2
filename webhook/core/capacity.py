"""Capacity-aware choice: the smallest fitting MIG profile that has a free slice now.

Pure: the view is built from plain dicts (Node and Pod objects as the API server sends
them) by :class:`ClusterTally` (incrementally, for the watcher in
webhook/serving/cluster_watch.py) or :func:`build_view` (a snapshot, for the CLI), and
:func:`prefer_free` is a function of (need, policy, view, pod). Nothing here waits on
anything or reads a clock: the caller says what time it is (:class:`CapacityRead`).

Free, per pool and profile = the allocatable slices of usable nodes the pod could land on
(Ready, schedulable, the pool's selector and the policy's affinity match, NoSchedule and
NoExecute taints tolerated by the pod as mutated), minus what bound non-terminal pods
request there, minus pods admitted with our assigned-profile annotation and not yet bound,
minus this server's own admissions the view does not show yet (``reserved``). See
docs/capacity.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webhook.core.catalog import MigProfile
from webhook.core.constants import ASSIGNED_PROFILE, GPU_RESOURCE, MIG_RESOURCE_PREFIX
from webhook.core.gpu_requests import TERMINAL_PHASES, is_gpu_resource, pod_requests, resource_count
from webhook.core.policy import Policy, Pool, WorkloadClass, profile_node_requirements
from webhook.core.sizing import MemoryNeed, PoolChoice

# nvidia.com/mig-<profile> (the mixed strategy's resources); webhook/planning/live.py reads them too.
MIG_RESOURCE = re.compile("^" + re.escape(MIG_RESOURCE_PREFIX) + "(.+)$")
# Taints that keep a pod off a node (PreferNoSchedule only makes it less likely).
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
# The most (pool, profile) entries a capacity note names.
_MAX_NOTED = 6

Taint = tuple[str, str, str]  # (key, value, effect)
SliceKey = tuple[str, str]  # (extended resource, profile): what a pending pod holds


# --- nodes and pods, as the view keeps them ----------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeState:
    name: str
    usable: bool  # Ready and schedulable
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]  # NoSchedule and NoExecute only
    allocatable: Mapping[str, int]  # nvidia.com/gpu and nvidia.com/mig-* only


@dataclass(frozen=True, slots=True)
class PodRecord:
    namespace: str
    name: str
    generate_name: str
    created: float  # creationTimestamp, epoch seconds (0 when absent)
    node: str  # spec.nodeName, "" while unbound
    requests: tuple[tuple[str, int], ...]  # GPU resources, effective (max(sum of containers, any init container))
    assigned: str | None  # our assigned-profile annotation


def node_state(node: dict[str, Any]) -> NodeState | None:
    """What the view keeps of a Node; None for a node that offers no GPU resource."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    allocatable = {k: resource_count(v) for k, v in (status.get("allocatable") or {}).items() if is_gpu_resource(k)}
    if not allocatable:
        return None
    spec = node.get("spec") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    taints = tuple(
        (str(t.get("key", "")), str(t.get("value", "")), str(t.get("effect", "")))
        for t in spec.get("taints") or ()
        if t.get("effect") in BLOCKING_EFFECTS
    )
    return NodeState(
        name=str(meta.get("name", "")),
        usable=ready and not spec.get("unschedulable"),
        labels=dict(meta.get("labels") or {}),
        taints=taints,
        allocatable=allocatable,
    )


def _epoch(stamp: object) -> float:
    if not isinstance(stamp, str):
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def pod_record(pod: dict[str, Any]) -> PodRecord | None:
    """What the view keeps of a Pod; None for one that holds nothing (terminal, or no GPU resource)."""
    status = pod.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES:
        return None
    requests = pod_requests(pod)
    if not requests:
        return None
    meta = pod.get("metadata") or {}
    return PodRecord(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        generate_name=str(meta.get("generateName") or ""),
        created=_epoch(meta.get("creationTimestamp")),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        requests=tuple(sorted(requests.items())),
        assigned=(meta.get("annotations") or {}).get(ASSIGNED_PROFILE),
    )


def _pending_keys(record: PodRecord) -> Iterable[tuple[SliceKey, int]]:
    """A pod we admitted and the scheduler has not bound yet holds its slice already."""
    if record.node or not record.assigned:
        return ()
    return (((resource, record.assigned), n) for resource, n in record.requests)


# --- the view ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SliceGroup:
    """Slices of one (pool, profile) on nodes that share one set of blocking taints."""

    taints: tuple[Taint, ...]
    total: int
    free: int


@dataclass(frozen=True)
class CapacityView:
    """The cluster's GPU nodes and what holds their slices, at ``observed_at`` (epoch
    seconds of the last successful list or watch event). Immutable; share it freely."""

    nodes: tuple[NodeState, ...]
    used: Mapping[str, Mapping[str, int]]  # node -> resource -> bound non-terminal pods' requests
    pending: Mapping[SliceKey, int]  # our admitted, unbound pods
    admitted: frozenset[tuple[str, str]]  # (namespace, name) of pods carrying our annotation
    generated: Mapping[tuple[str, str], tuple[float, ...]]  # (namespace, generateName) -> creation times
    observed_at: float
    pods: int = 0  # pods that hold or wait for a GPU resource
    _index: dict[int, tuple[Policy, Mapping[tuple[str, str], tuple[SliceGroup, ...]]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def supply(self, policy: Policy) -> Mapping[tuple[str, str], tuple[SliceGroup, ...]]:
        """(pool, profile) -> its slice groups under ``policy``; computed once per policy
        (the watcher does it before publishing, so a request does not)."""
        cached = self._index.get(id(policy))
        if cached is not None and cached[0] is policy:
            return cached[1]
        built = _supply(self, policy)
        if len(self._index) > 4:
            self._index.clear()
        self._index[id(policy)] = (policy, built)
        return built


def slice_key(pool: Pool, profile: MigProfile) -> SliceKey:
    return (GPU_RESOURCE if pool.strategy == "single" else MIG_RESOURCE_PREFIX + profile.name, profile.name)


def matches(labels: Mapping[str, str], requirement: Mapping[str, Any]) -> bool:
    """A NodeSelectorRequirement against a node's labels (the scheduler's semantics)."""
    key, op = requirement["key"], requirement["operator"]
    values: list[str] = list(requirement.get("values") or ())
    value = labels.get(key)
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if value is None or not value.lstrip("-").isdigit():
        return False
    return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])


def _supply(view: CapacityView, policy: Policy) -> dict[tuple[str, str], tuple[SliceGroup, ...]]:
    out: dict[tuple[str, str], tuple[SliceGroup, ...]] = {}
    for pool in policy.pools:
        for profile in pool.profiles:
            resource = slice_key(pool, profile)[0]
            required = profile_node_requirements(policy, pool, profile)
            groups: dict[tuple[Taint, ...], list[int]] = {}
            for node in view.nodes:
                have = node.allocatable.get(resource, 0)
                if not have or not node.usable or not all(matches(node.labels, r) for r in required):
                    continue
                free = max(0, have - view.used.get(node.name, {}).get(resource, 0))
                group = groups.setdefault(node.taints, [0, 0])
                group[0] += have
                group[1] += free
            out[(pool.name, profile.name)] = tuple(SliceGroup(t, n, f) for t, (n, f) in groups.items())
    return out


class ClusterTally:
    """The mutable side: nodes and pods as watch events arrive, kept as small records and
    running sums, so a new view costs a copy of the sums, not a pass over every pod.
    Not thread-safe: its owner serialises calls."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeState] = {}
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self.used: dict[str, dict[str, int]] = {}
        self.pending: dict[SliceKey, int] = {}
        self.generated: dict[tuple[str, str], list[float]] = {}
        self.admitted: set[tuple[str, str]] = set()

    def set_node(self, node: dict[str, Any]) -> None:
        name = str((node.get("metadata") or {}).get("name", ""))
        state = node_state(node)
        if state is None:
            self.nodes.pop(name, None)
        else:
            self.nodes[name] = state

    def remove_node(self, name: str) -> None:
        self.nodes.pop(name, None)

    def set_pod(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        self.remove_pod(key)
        record = pod_record(pod)
        if record is not None:
            self._add(key, record)

    def remove_pod(self, key: tuple[str, str]) -> None:
        record = self.pods.pop(key, None)
        if record is not None:
            self._apply(key, record, -1)

    def clear_pods(self) -> None:
        self.pods.clear()
        self.used.clear()
        self.pending.clear()
        self.generated.clear()
        self.admitted.clear()

    def _add(self, key: tuple[str, str], record: PodRecord) -> None:
        self.pods[key] = record
        self._apply(key, record, 1)

    def _apply(self, key: tuple[str, str], record: PodRecord, sign: int) -> None:
        if record.node:
            used = self.used.setdefault(record.node, {})
            for resource, n in record.requests:
                used[resource] = used.get(resource, 0) + sign * n
                if not used[resource]:
                    del used[resource]
            if not used:
                del self.used[record.node]
        for slice_, n in _pending_keys(record):
            self.pending[slice_] = self.pending.get(slice_, 0) + sign * n
            if not self.pending[slice_]:
                del self.pending[slice_]
        if record.assigned:
            if sign > 0:
                self.admitted.add(key)
            else:
                self.admitted.discard(key)
            if record.generate_name:
                times = self.generated.setdefault((record.namespace, record.generate_name), [])
                if sign > 0:
                    times.append(record.created)
                else:
                    times.remove(record.created)
                if not times:
                    del self.generated[(record.namespace, record.generate_name)]

    def snapshot(self, observed_at: float) -> CapacityView:
        return CapacityView(
            nodes=tuple(self.nodes.values()),
            used={node: dict(amounts) for node, amounts in self.used.items()},
            pending=dict(self.pending),
            admitted=frozenset(self.admitted),
            generated={k: tuple(sorted(v)) for k, v in self.generated.items()},
            observed_at=observed_at,
            pods=len(self.pods),
        )


def build_view(nodes: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]], observed_at: float) -> CapacityView:
    """A view of plain Node and Pod dicts (a snapshot: `kubectl get nodes,pods -A -o json`)."""
    tally = ClusterTally()
    for node in nodes:
        tally.set_node(node)
    for pod in pods:
        tally.set_pod(pod)
    return tally.snapshot(observed_at)


def split_objects(objects: Iterable[object]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(nodes, pods) of a list of objects, List documents unpacked; anything else is ignored."""
    nodes: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    stack = list(objects)
    while stack:
        obj = stack.pop(0)
        if not isinstance(obj, dict):
            continue
        kind = obj.get("kind")
        if kind == "List" or (isinstance(kind, str) and kind.endswith("List")):
            stack[:0] = [
                dict(i, kind=i.get("kind") or kind[:-4]) for i in obj.get("items") or () if isinstance(i, dict)
            ]
        elif kind == "Node":
            nodes.append(obj)
        elif kind == "Pod":
            pods.append(obj)
    return nodes, pods


# --- what this server admitted and the view does not show yet -------------------------


@dataclass(frozen=True, slots=True)
class Reservation:
    namespace: str
    name: str  # "" for a pod named by generateName (the API server names it after admission)
    generate_name: str
    slice: SliceKey
    at: float  # epoch seconds


def settle(reservations: Sequence[Reservation], view: CapacityView | None, now: float, ttl: float) -> list[Reservation]:
    """The reservations ``view`` does not show yet and that are younger than ``ttl``. A named
    pod is shown when the view holds it; a generateName pod when the view holds a pod of that
    generateName created at or after the reservation (creationTimestamp has whole seconds),
    each such pod settling one reservation."""
    kept: list[Reservation] = []
    claimed: dict[tuple[str, str], int] = {}
    for r in sorted(reservations, key=lambda r: r.at):
        if now - r.at > ttl:
            continue
        if view is not None:
            if r.name:
                if (r.namespace, r.name) in view.admitted:
                    continue
            else:
                times = view.generated.get((r.namespace, r.generate_name), ())
                group = (r.namespace, r.generate_name)
                start = claimed.get(group, 0)
                found = next((i for i in range(start, len(times)) if times[i] >= int(r.at) - 1), None)
                if found is not None:
                    claimed[group] = found + 1
                    continue
        kept.append(r)
    return kept


def reserved_counts(reservations: Iterable[Reservation]) -> dict[SliceKey, int]:
    out: dict[SliceKey, int] = {}
    for r in reservations:
        out[r.slice] = out.get(r.slice, 0) + 1
    return out


# --- the choice ----------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityRead:
    """What one decision reads: the latest view (None before the first sync), the time,
    and the slices this server admitted that the view does not show yet."""

    view: CapacityView | None
    now: float
    reserved: Mapping[SliceKey, int] = field(default_factory=dict)

    @property
    def age(self) -> float:
        return self.now - self.view.observed_at if self.view is not None else float("inf")


@dataclass(frozen=True)
class CapacityChoice:
    pool: Pool
    profile: MigProfile
    note: str  # what was full and what was chosen, for the decision message
    result: str  # "free" | "full" | "stale" | "no-view"
    deny: bool = False


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Taint) -> bool:
    key, value, effect = taint
    for t in tolerations:
        if t.get("effect") and t.get("effect") != effect:
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists" and not t.get("key"):
            return True
        if t.get("key") != key:
            continue
        if op == "Exists" or (t.get("value") or "") == value:
            return True
    return False


def pod_tolerations(
    pod: dict[str, Any], policy: Policy, workload_class: WorkloadClass | None
) -> tuple[Mapping[str, Any], ...]:
    """The pod's tolerations once mutated: its own, the policy's, its workload class's."""
    own = (pod.get("spec") or {}).get("tolerations")
    own = tuple(t for t in own if isinstance(t, dict)) if isinstance(own, list) else ()
    return own + policy.tolerations + (workload_class.tolerations if workload_class else ())


def _resource(pool: Pool, profile: MigProfile) -> str:
    return f"{pool.mig_product(profile)}" if pool.strategy == "single" else MIG_RESOURCE_PREFIX + profile.name


def prefer_free(
    need: MemoryNeed,
    policy: Policy,
    read: CapacityRead,
    pod: dict[str, Any],
    workload_class: WorkloadClass | None,
    static: PoolChoice,
) -> CapacityChoice:
    """Among the profiles of every pool that fit ``need``, the smallest with a free slice on
    a node the pod could land on; nothing free: ``static`` (or a denial, by policy)."""
    settings = policy.capacity
    if read.view is None:
        return CapacityChoice(static.pool, static.profile, "no capacity view yet; static choice", "no-view")
    if read.age > settings.max_staleness:
        note = (
            f"capacity view is {read.age:.0f}s old (capacity.maxStaleness {settings.max_staleness:g}s), "
            "not trusted; static choice"
        )
        return CapacityChoice(static.pool, static.profile, note, "stale")
    supply = read.view.supply(policy)
    tolerations = pod_tolerations(pod, policy, workload_class)
    parts: list[str] = []
    for pool, profile, key, groups in _candidates(policy, supply):
        if not need.fits(profile):
            continue
        total = free = 0
        for group in groups:
            if not group.taints or all(tolerates(tolerations, t) for t in group.taints):
                total += group.total
                free += group.free
        free = max(0, free - read.view.pending.get(key, 0) - read.reserved.get(key, 0))
        if free:
            parts.append(f"{profile.name}: {free} free in pool {pool.name} -> {_resource(pool, profile)}")
            return CapacityChoice(pool, profile, _joined(parts), "free")
        parts.append(f"{profile.name}: 0 of {total} free in pool {pool.name}")
    full = _joined(parts)
    if settings.when_full == "deny":
        return CapacityChoice(
            static.pool, static.profile, f"no free slice fits: {full}; refused (capacity.whenFull: deny)", "full", True
        )
    note = f"{full}; nothing free -> static choice {_resource(static.pool, static.profile)} (waits for a slice)"
    return CapacityChoice(static.pool, static.profile, note, "full")


_ORDER: dict[
    int, tuple[Policy, Mapping[Any, Any], list[tuple[Pool, MigProfile, SliceKey, tuple[SliceGroup, ...]]]]
] = {}


def _candidates(
    policy: Policy, supply: Mapping[tuple[str, str], tuple[SliceGroup, ...]]
) -> list[tuple[Pool, MigProfile, SliceKey, tuple[SliceGroup, ...]]]:
    """Every (pool, profile) smallest first (select_profile's order, then pool order), with
    its slice key and groups: computed once per (policy, view), not per admission."""
    cached = _ORDER.get(id(supply))
    if cached is not None and cached[0] is policy and cached[1] is supply:
        return cached[2]
    ranked = sorted(
        ((i, pool, p) for i, pool in enumerate(policy.pools) for p in pool.profiles),
        key=lambda c: (c[2].memory_mib, c[2].compute_slices, -c[2].max_instances, c[0]),
    )
    order = [(pool, p, slice_key(pool, p), supply.get((pool.name, p.name), ())) for _, pool, p in ranked]
    if len(_ORDER) > 8:
        _ORDER.clear()
    _ORDER[id(supply)] = (policy, supply, order)
    return order


def _joined(parts: list[str]) -> str:
    if len(parts) <= _MAX_NOTED:
        return "; ".join(parts)
    return "; ".join(parts[: _MAX_NOTED - 1] + [f"{len(parts) - _MAX_NOTED} more full", parts[-1]])


# --- stranded capacity (plan) -------------------------------------------------------


@dataclass(frozen=True)
class ProfileUse:
    pool: str
    profile: str
    total: int
    free: int
    waiting: int  # our admitted pods Pending on this profile
    stranded: int  # free slices while pods wait on a smaller profile of the pool


def profile_use(view: CapacityView, policy: Policy) -> list[ProfileUse]:
    """Per pool and profile: slices on usable nodes, free now, pods waiting, and stranded
    slices (free while pods that would fit them wait Pending on a smaller profile). Taints
    are ignored here: the report is per pool, not per pod."""
    supply = view.supply(policy)
    rows: list[ProfileUse] = []
    for pool in policy.pools:
        for profile in pool.profiles:
            groups = supply.get((pool.name, profile.name), ())
            key = slice_key(pool, profile)
            free = max(0, sum(g.free for g in groups) - view.pending.get(key, 0))
            smaller_waiting = sum(
                view.pending.get(slice_key(pool, p), 0) for p in pool.profiles if p.memory_mib < profile.memory_mib
            )
            rows.append(
                ProfileUse(
                    pool.name,
                    profile.name,
                    sum(g.total for g in groups),
                    free,
                    view.pending.get(key, 0),
                    min(free, smaller_waiting),
                )
            )
    return rows
