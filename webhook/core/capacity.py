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

import functools
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

import immutables

from webhook.core.catalog import MigProfile
from webhook.core.constants import ASSIGNED_PROFILE, GPU_RESOURCE, MIG_RESOURCE_PREFIX
from webhook.core.gpu_requests import TERMINAL_PHASES, is_gpu_resource, pod_requests, resource_count
from webhook.core.policy import Policy, Pool, WorkloadClass, profile_node_requirements
from webhook.core.sizing import BYTES_PER_MIB, MemoryNeed, PoolChoice

# nvidia.com/mig-<profile> (the mixed strategy's resources); webhook/planning/live.py reads them too.
MIG_RESOURCE = re.compile("^" + re.escape(MIG_RESOURCE_PREFIX) + "(.+)$")
# Taints that keep a pod off a node (PreferNoSchedule only makes it less likely).
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
# The most (pool, profile) entries a capacity note names.
_MAX_NOTED = 6
# How long after its creation a pod of ours can still settle a reservation. Far above the
# reservation TTL (webhook/admission/capacity_answers.py) to absorb clock skew between the
# API server (creationTimestamp) and this server; a pod settled late only holds a slice
# twice for a while, never too few.
RECENT_SECONDS = 120.0

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


class PodRecord(NamedTuple):
    """What the view keeps of one pod; its (namespace, name) is the key it is kept under.
    Strings repeated across pods are interned and request tuples shared (_shared), so
    100,000 pods cost a few tens of MiB (bench/bench_capacity.py). A tuple of strings and
    numbers, which the garbage collector stops tracking: 100,000 of them add nothing to
    the collections every admission's allocations trigger."""

    node: str  # spec.nodeName, "" while unbound
    requests: tuple[tuple[str, int], ...]  # GPU resources, effective (max(sum of containers, any init container))
    assigned: str | None  # our assigned-profile annotation
    generate_name: str
    created: float  # creationTimestamp, epoch seconds (0 when absent)


@functools.lru_cache(maxsize=1024)
def _shared(requests: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """One tuple object per distinct request shape (a handful in a real cluster)."""
    return requests


def _interned(value: object) -> str:
    return sys.intern(str(value)) if value else ""


def node_state(node: dict[str, Any], label_keys: frozenset[str] | None = None) -> NodeState | None:
    """What the view keeps of a Node; None for a node that offers no GPU resource. With
    ``label_keys``, only those labels are kept (node_label_keys: what the policy selects
    on): a GPU node carries 100+ labels from GFD and NFD, and the view needs a handful."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    allocatable = {
        sys.intern(k): resource_count(v) for k, v in (status.get("allocatable") or {}).items() if is_gpu_resource(k)
    }
    if not allocatable:
        return None
    spec = node.get("spec") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    taints = tuple(
        (_interned(t.get("key")), _interned(t.get("value")), _interned(t.get("effect")))
        for t in spec.get("taints") or ()
        if t.get("effect") in BLOCKING_EFFECTS
    )
    labels = meta.get("labels") or {}
    return NodeState(
        name=_interned(meta.get("name")),
        usable=ready and not spec.get("unschedulable"),
        labels={sys.intern(k): _interned(v) for k, v in labels.items() if label_keys is None or k in label_keys},
        taints=taints,
        allocatable=allocatable,
    )


def node_label_keys(policy: Policy) -> frozenset[str]:
    """The node labels ``policy``'s pools and affinity select on: all a view must keep."""
    return frozenset(
        str(r["key"])
        for pool in policy.pools
        for profile in pool.profiles
        for r in profile_node_requirements(policy, pool, profile)
    )


def _epoch(stamp: object) -> float:
    if not isinstance(stamp, str):
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def pod_key(pod: dict[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return (_interned(meta.get("namespace")), str(meta.get("name", "")))


def pod_record(pod: dict[str, Any]) -> PodRecord | None:
    """What the view keeps of a Pod; None for one that holds nothing (terminal, or no GPU resource)."""
    status = pod.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES:
        return None
    requests = pod_requests(pod)
    if not requests:
        return None
    meta = pod.get("metadata") or {}
    assigned = (meta.get("annotations") or {}).get(ASSIGNED_PROFILE)
    return PodRecord(
        node=_interned((pod.get("spec") or {}).get("nodeName")),
        requests=_shared(tuple(sorted((sys.intern(k), v) for k, v in requests.items()))),
        assigned=_interned(assigned) if isinstance(assigned, str) else None,
        generate_name=_interned(meta.get("generateName")),
        created=_epoch(meta.get("creationTimestamp")),
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

    by_name: Mapping[str, NodeState]  # persistent: shared with the watcher, never copied
    used: Mapping[str, Mapping[str, int]]  # node -> resource -> bound non-terminal pods' requests
    pending: Mapping[SliceKey, int]  # our admitted, unbound pods
    # Of the pods carrying our annotation and created in the last RECENT_SECONDS: what
    # settles a reservation.
    admitted: frozenset[tuple[str, str]]  # (namespace, name)
    generated: Mapping[tuple[str, str], tuple[float, ...]]  # (namespace, generateName) -> creation times
    observed_at: float
    pods: int = 0  # pods that hold or wait for a GPU resource
    _index: dict[int, _Indexed] = field(default_factory=dict, compare=False, repr=False)
    # [the previous view, the nodes changed since]: what this view's supply is updated
    # from (_update_supply) instead of a pass over every node; emptied once used, so views
    # never chain.
    _basis: list[Any] = field(default_factory=list, compare=False, repr=False)

    # (id(policy), workload class) -> offered(): for pods with no tolerations of their own
    _offers: dict[tuple[int, str], tuple[Policy, tuple[tuple[int, int, str], ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @functools.cached_property
    def nodes(self) -> tuple[NodeState, ...]:
        return tuple(self.by_name.values())

    def supply(self, policy: Policy) -> Mapping[tuple[str, str], tuple[SliceGroup, ...]]:
        """(pool, profile) -> its slice groups under ``policy``; computed once per policy
        (the watcher does it before publishing, so a request does not)."""
        return self._indexed(policy)[1]

    def candidates(self, policy: Policy) -> tuple[Candidate, ...]:
        """Every (pool, profile) of ``policy`` that has slices in this view, smallest first."""
        return self._indexed(policy)[2]

    def offered(self, policy: Policy, workload_class: WorkloadClass | None) -> tuple[tuple[int, int, str], ...]:
        """Per candidate (same order): (slices, free ones less our waiting pods, what the
        note says when none is free) on nodes whose taints a pod of ``workload_class`` with
        no tolerations of its own tolerates."""
        key = (id(policy), workload_class.name if workload_class else "")
        cached = self._offers.get(key)
        if cached is not None and cached[0] is policy:
            return cached[1]
        tolerations = policy.tolerations + (workload_class.tolerations if workload_class else ())
        known = tuple(
            (total, free, f"{c.label}0 of {total}{c.where}")
            for c in self.candidates(policy)
            for total, free in ((c.total, c.free) if c.untainted else _tolerated_supply(c, self, tolerations),)
        )
        if len(self._offers) > 64:
            self._offers.clear()
        self._offers[key] = (policy, known)
        return known

    def _indexed(self, policy: Policy) -> _Indexed:
        cached = self._index.get(id(policy))
        if cached is not None and cached[0] is policy:
            return cached
        state = None
        if self._basis:
            previous, dirty = self._basis
            before = previous._index.get(id(policy))
            if before is not None and before[0] is policy:
                state = _update_supply(before[3], self, dirty)
        self._basis.clear()
        if state is None:
            state = _supply_state(self, policy)
        supply = {
            entry: tuple(SliceGroup(t, n, f) for t, (n, f) in groups.items()) for entry, groups in state.sums.items()
        }
        built = (policy, supply, _ranked(policy, supply, self.pending), state)
        if len(self._index) > 4:
            self._index.clear()
        self._index[id(policy)] = built
        return built


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (pool, profile) as prefer_free walks them, with what it needs precomputed."""

    pool: Pool
    profile: MigProfile
    key: SliceKey
    bytes: int  # the profile's memory
    groups: tuple[SliceGroup, ...]
    untainted: bool  # no group has a blocking taint: no toleration check needed
    total: int  # slices in all groups
    free: int  # free in all groups, less our admitted pods waiting for one (pending)
    label: str  # "<profile>: " for the note
    where: str  # " free in pool <pool>" for the note
    resource: str  # what the pod is rewritten to request


def _ranked(
    policy: Policy, supply: Mapping[tuple[str, str], tuple[SliceGroup, ...]], pending: Mapping[SliceKey, int]
) -> tuple[Candidate, ...]:
    """select_profile's order (least memory, then fewest compute slices, then most
    instances), then pool order; (pool, profile)s without a single slice are left out."""
    ranked = sorted(
        ((i, pool, p) for i, pool in enumerate(policy.pools) for p in pool.profiles),
        key=lambda c: (c[2].memory_mib, c[2].compute_slices, -c[2].max_instances, c[0]),
    )
    out = []
    for _, pool, profile in ranked:
        groups = supply.get((pool.name, profile.name), ())
        total = sum(g.total for g in groups)
        if total:
            key = slice_key(pool, profile)
            out.append(
                Candidate(
                    pool,
                    profile,
                    key,
                    profile.memory_mib * BYTES_PER_MIB,
                    groups,
                    not any(g.taints for g in groups),
                    total,
                    sum(g.free for g in groups) - pending.get(key, 0),
                    f"{profile.name}: ",
                    f" free in pool {pool.name}",
                    _resource(pool, profile),
                )
            )
    return tuple(out)


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


Entry = tuple[str, str]  # (pool, profile)


@dataclass(frozen=True)
class SupplyState:
    """One policy's supply in one view, kept so that the next view updates it for the nodes
    that changed (_update_supply) rather than passing over every node again: with 5,000
    nodes that pass is 20 ms of the process's GIL per view, the update well under one."""

    requirement_sets: tuple[tuple[dict[str, Any], ...], ...]  # distinct node requirements
    wanted: Mapping[str, tuple[tuple[Entry, int], ...]]  # resource -> (entry, requirement set)
    # node -> what it adds: (entry, taints, slices, free); never changed once built
    contributions: immutables.Map[str, tuple[tuple[Entry, tuple[Taint, ...], int, int], ...]]
    # entry -> taints -> [slices, free]; never changed once built
    sums: Mapping[Entry, Mapping[tuple[Taint, ...], list[int]]]


_Indexed = tuple[Policy, Mapping[Entry, tuple[SliceGroup, ...]], tuple["Candidate", ...], SupplyState]


def _supply_state(view: CapacityView, policy: Policy) -> SupplyState:
    """One pass over the nodes: each node's GPU resources are credited to the (pool,
    profile)s that ask for that resource and whose node requirements the node meets, each
    distinct set of requirements (one per pool, or per profile of a single-strategy pool)
    checked once per node."""
    requirement_sets: list[tuple[dict[str, Any], ...]] = []
    seen: dict[str, int] = {}
    wanted: dict[str, list[tuple[Entry, int]]] = {}
    sums: dict[Entry, dict[tuple[Taint, ...], list[int]]] = {}
    for pool in policy.pools:
        for profile in pool.profiles:
            required = tuple(profile_node_requirements(policy, pool, profile))
            index = seen.setdefault(repr(required), len(requirement_sets))
            if index == len(requirement_sets):
                requirement_sets.append(required)
            entry = (pool.name, profile.name)
            wanted.setdefault(slice_key(pool, profile)[0], []).append((entry, index))
            sums[entry] = {}
    state = SupplyState(tuple(requirement_sets), {k: tuple(v) for k, v in wanted.items()}, immutables.Map(), sums)
    contributions: dict[str, tuple[tuple[Entry, tuple[Taint, ...], int, int], ...]] = {}
    for node in view.nodes:
        added = _contribution(state, node, view.used.get(node.name, {}))
        if added:
            contributions[node.name] = added
            _add(sums, added, 1)
    return replace(state, contributions=immutables.Map(contributions))


def _update_supply(before: SupplyState, view: CapacityView, dirty: frozenset[str]) -> SupplyState:
    """``before`` (the previous view's) with the contributions of the ``dirty`` nodes
    taken out and put back as they are in ``view``; copies, so ``before`` stays as it was."""
    sums = {entry: {taints: list(pair) for taints, pair in groups.items()} for entry, groups in before.sums.items()}
    with before.contributions.mutate() as contributions:
        for name in dirty:
            old = contributions.pop(name, None)
            if old:
                _add(sums, old, -1)
            node = view.by_name.get(name)
            added = _contribution(before, node, view.used.get(name, {})) if node is not None else ()
            if added:
                contributions[name] = added
                _add(sums, added, 1)
        updated = contributions.finish()
    return replace(before, contributions=updated, sums=sums)


def _contribution(
    state: SupplyState, node: NodeState, used: Mapping[str, int]
) -> tuple[tuple[Entry, tuple[Taint, ...], int, int], ...]:
    if not node.usable:
        return ()
    met: list[bool | None] = [None] * len(state.requirement_sets)
    out = []
    for resource, have in node.allocatable.items():
        entries = state.wanted.get(resource)
        if not entries or have <= 0:
            continue
        free = max(0, have - used.get(resource, 0))
        for entry, index in entries:
            ok = met[index]
            if ok is None:
                ok = met[index] = all(matches(node.labels, r) for r in state.requirement_sets[index])
            if ok:
                out.append((entry, node.taints, have, free))
    return tuple(out)


def _add(
    sums: Mapping[Entry, dict[tuple[Taint, ...], list[int]]],
    contribution: tuple[tuple[Entry, tuple[Taint, ...], int, int], ...],
    sign: int,
) -> None:
    for entry, taints, have, free in contribution:
        group = sums[entry].setdefault(taints, [0, 0])
        group[0] += sign * have
        group[1] += sign * free
        if not group[0]:
            del sums[entry][taints]


def _bump(counts: dict[Any, int], key: Any, delta: int) -> None:
    """Add ``delta`` to a running count; a count that reaches 0 is dropped."""
    n = counts.get(key, 0) + delta
    if n:
        counts[key] = n
    else:
        counts.pop(key, None)


class ClusterTally:
    """The mutable side: nodes and pods as watch events arrive, kept as small records,
    running sums and persistent maps, so a new view shares the maps and copies a few small
    sums, not a pass over every pod. Not thread-safe: its owner serialises calls."""

    def __init__(self, label_keys: frozenset[str] | None = None) -> None:
        self.label_keys = label_keys  # the node labels kept (None: all)
        # Persistent maps: a snapshot shares them as they are (immutables.Map, a HAMT).
        self.nodes: immutables.Map[str, NodeState] = immutables.Map()
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self.used: immutables.Map[str, dict[str, int]] = immutables.Map()
        self.pending: dict[SliceKey, int] = {}
        # Pods with our annotation created lately: what settles a reservation (settle).
        # Older ones are dropped at each snapshot; a reservation lives far less long.
        self.recent: dict[tuple[str, str], PodRecord] = {}
        # namespace -> GPU resource -> what its pods hold: the quota view's input
        # (webhook/core/quota.py), kept as a sum so a view costs no pass over every pod.
        self.held: dict[str, dict[str, int]] = {}
        # What changed since the last snapshot, which the next view's supply is updated from.
        self._last: CapacityView | None = None
        self._dirty: set[str] = set()  # node names whose state or used slices changed
        self._all_dirty = True

    # Each update says whether the view changed: most Node and Pod updates (heartbeats,
    # conditions, labels nothing selects on) change nothing kept here, and need no new view.

    def set_node(self, node: dict[str, Any]) -> bool:
        name = str((node.get("metadata") or {}).get("name", ""))
        state = node_state(node, self.label_keys)
        if state is None:
            return self.remove_node(name)
        if self.nodes.get(name) == state:
            return False
        self.nodes = self.nodes.set(name, state)
        self._dirty.add(name)
        return True

    def remove_node(self, name: str) -> bool:
        if name not in self.nodes:
            return False
        self.nodes = self.nodes.delete(name)
        self._dirty.add(name)
        return True

    def clear_nodes(self) -> None:
        self.nodes = immutables.Map()
        self._all_dirty = True

    def set_pod(self, pod: dict[str, Any]) -> bool:
        key = pod_key(pod)
        record = pod_record(pod)
        if record is not None and self.pods.get(key) == record:
            return False
        removed = self.remove_pod(key)
        if record is None:
            return removed
        self.pods[key] = record
        self._apply(key[0], record, 1)
        if record.assigned:
            self.recent[key] = record
        return True

    def remove_pod(self, key: tuple[str, str]) -> bool:
        record = self.pods.pop(key, None)
        if record is None:
            return False
        self._apply(key[0], record, -1)
        self.recent.pop(key, None)
        return True

    def clear_pods(self) -> None:
        self.pods.clear()
        self.held.clear()
        self.used = immutables.Map()
        self._all_dirty = True
        self.pending.clear()
        self.recent.clear()

    def _apply(self, namespace: str, record: PodRecord, sign: int) -> None:
        held = self.held.setdefault(namespace, {})
        for resource, n in record.requests:
            _bump(held, resource, sign * n)
        if not held:
            del self.held[namespace]
        if record.node:
            # A new dict, not the old one changed: views share these.
            used = dict(self.used.get(record.node, {}))
            for resource, n in record.requests:
                _bump(used, resource, sign * n)
            if used:
                self.used = self.used.set(record.node, used)
            elif record.node in self.used:
                self.used = self.used.delete(record.node)
            self._dirty.add(record.node)
        for slice_, n in _pending_keys(record):
            _bump(self.pending, slice_, sign * n)

    def snapshot(self, observed_at: float) -> CapacityView:
        horizon = observed_at - RECENT_SECONDS
        for key in [k for k, r in self.recent.items() if r.created < horizon]:
            del self.recent[key]
        generated: dict[tuple[str, str], list[float]] = {}
        for (namespace, _), record in self.recent.items():
            if record.generate_name:
                generated.setdefault((namespace, record.generate_name), []).append(record.created)
        last = self._last
        basis: list[Any] = [] if self._all_dirty or last is None or not last._index else [last, frozenset(self._dirty)]
        self._dirty, self._all_dirty = set(), False
        view = CapacityView(
            by_name=self.nodes,
            used=self.used,
            pending=dict(self.pending),
            admitted=frozenset(self.recent),
            generated={k: tuple(sorted(v)) for k, v in generated.items()},
            observed_at=observed_at,
            pods=len(self.pods),
            _basis=basis,
        )
        self._last = view
        return view


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


class CapacityChoice(NamedTuple):  # a tuple: built on every capacity-aware admission
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
    # need.fits, cross-multiplied once for every candidate (this loop is the added cost of
    # a capacity-aware decision: bench/bench_capacity.py).
    u = need.utilization
    needed, share = need.bytes * u.denominator, u.numerator
    full: list[str] = []  # "<profile>: 0 of <n> free in pool <pool>"
    reserved = read.reserved
    view = read.view
    candidates = view.candidates(policy)
    own = (pod.get("spec") or {}).get("tolerations")
    # A pod with no tolerations of its own (the usual case) tolerates what its policy and
    # class do: what each candidate offers it is worked out once per view and class.
    offered = None if own else view.offered(policy, workload_class)
    for i, c in enumerate(candidates):
        if needed > share * c.bytes:
            continue
        text = ""
        if offered is not None:
            total, free, text = offered[i]
        elif c.untainted:
            total, free = c.total, c.free
        else:
            total, free = _tolerated_supply(c, view, pod_tolerations(pod, policy, workload_class))
        if not total:
            continue
        if reserved:
            free -= reserved.get(c.key, 0)
        if free > 0:
            chosen = f"{c.label}{free}{c.where} -> {c.resource}"
            return CapacityChoice(c.pool, c.profile, _joined(full, chosen) if full else chosen, "free")
        full.append(text or f"{c.label}0 of {total}{c.where}")
    what = _joined(full, "") if full else "no node the pod could land on offers a slice that fits"
    if settings.when_full == "deny":
        return CapacityChoice(
            static.pool, static.profile, f"no free slice fits: {what}; refused (capacity.whenFull: deny)", "full", True
        )
    note = f"{what}; nothing free -> static choice {_resource(static.pool, static.profile)} (waits for a slice)"
    return CapacityChoice(static.pool, static.profile, note, "full")


def _tolerated_supply(c: Candidate, view: CapacityView, tolerations: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(slices, free ones less our pods waiting for one) of ``c`` on nodes whose taints
    ``tolerations`` tolerate."""
    total, free = 0, -view.pending.get(c.key, 0)
    for group in c.groups:
        if all(tolerates(tolerations, t) for t in group.taints):
            total += group.total
            free += group.free
    return total, free


def _joined(full: list[str], chosen: str) -> str:
    """ "1g.10gb: 0 of 14 free in pool a; ...; 2g.20gb: 3 free in pool a -> ...", at most
    _MAX_NOTED full ones, so the note stays short."""
    parts = full[:_MAX_NOTED]
    if len(full) > _MAX_NOTED:
        parts.append(f"{len(full) - _MAX_NOTED} more full")
    if chosen:
        parts.append(chosen)
    return "; ".join(parts)


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
