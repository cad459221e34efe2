"""Demand: what GPU resources a set of workloads needs, sized by the webhook itself.

Every pod goes through ``webhook.core.decision.decide`` (the same function the admission
webhook runs), so a pod is planned for exactly the slice the webhook would give it; a
pod the webhook leaves alone, denies or keeps whole is reported with the webhook's own
message. Nothing here estimates memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import yaml

from webhook.core.decision import decide, gpu_containers
from webhook.core.errors import BadObject, RightsizerError, UnsupportedObject
from webhook.core.outcomes import PlanAction
from webhook.core.policy import Policy, Pool
from webhook.core.workloads import pod_of
from webhook.planning.geometry import WHOLE_GPU

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# Kinds whose pods the planner counts, and how many run at once.
REPLICATED = ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController")


class DemandError(RightsizerError, ValueError):
    """A manifest cannot be read at all (not: a pod the webhook would refuse)."""


@dataclass(frozen=True)
class Workload:
    """One manifest object (or live pod) and what the webhook decides for its pod."""

    source: str  # file:document, or "cluster"
    kind: str
    namespace: str
    name: str
    replicas: int
    action: PlanAction
    message: str
    pool: str | None = None
    # per replica: resource key (a MIG profile name or WHOLE_GPU) -> how many
    per_replica: tuple[tuple[str, int], ...] = ()
    node: str | None = None  # live pods: where it runs now
    assigned_profile: str | None = None

    @property
    def label(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name}"


@dataclass(frozen=True)
class Unit:
    """One MIG instance (or one whole GPU) a replica needs."""

    workload: Workload
    replica: int
    pool: str
    resource: str  # profile name or WHOLE_GPU

    @property
    def label(self) -> str:
        suffix = f"[{self.replica}]" if self.workload.replicas > 1 else ""
        return self.workload.label + suffix


@dataclass
class Demand:
    workloads: list[Workload] = field(default_factory=list)

    @property
    def units(self) -> list[Unit]:
        out = []
        for w in self.workloads:
            if w.pool is None:
                continue
            for r in range(w.replicas):
                for resource, n in w.per_replica:
                    out.extend(Unit(w, r, w.pool, resource) for _ in range(n))
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """pool -> resource -> units."""
        out: dict[str, dict[str, int]] = {}
        for unit in self.units:
            pool = out.setdefault(unit.pool, {})
            pool[unit.resource] = pool.get(unit.resource, 0) + 1
        return out


def replicas_of(obj: dict) -> int:
    """How many pods of the object run at once (a CronJob: one Job at a time)."""
    kind = obj.get("kind")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    if kind in REPLICATED:
        value = spec.get("replicas", 1)
        return _count(value, f"{kind}.spec.replicas")
    if kind in ("Job", "CronJob"):
        job = spec if kind == "Job" else ((spec.get("jobTemplate") or {}).get("spec") or {})
        parallelism = _count(job.get("parallelism", 1), f"{kind} parallelism")
        if job.get("completions") is not None:
            parallelism = min(parallelism, _count(job["completions"], f"{kind} completions"))
        return parallelism
    return 1


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadObject(what, f"must be a non-negative integer, not {json.dumps(value, default=str)[:32]}")
    return value


def whole_pool(pod: dict, policy: Policy) -> Pool:
    """Where a whole-GPU pod runs: the pool whose node selector its nodeSelector matches,
    else the first pool (the decision names no pool for pods it does not rewrite)."""
    selector = ((pod.get("spec") or {}).get("nodeSelector")) or {}
    for pool in policy.pools:
        if pool.node_selector and all(selector.get(k) == v for k, v in pool.node_selector):
            return pool
    return policy.pools[0]


def pod_resources(pod: dict, decision, policy: Policy) -> tuple[str | None, dict[str, int], str | None]:
    """(pool, resource -> count, problem) for one pod under ``decision``. Effective
    request as the scheduler computes it: max(sum of containers, largest init container)."""
    rewritten = {(ref.field, ref.index) for ref in decision.containers} if decision.action == "rewrite" else set()
    regular: dict[str, int] = {}
    init: dict[str, int] = {}
    for ref, text, number in gpu_containers(pod):
        if (ref.field, ref.index) in rewritten:
            key, n = decision.profile.name, 1
        else:
            if number is None or number != number.to_integral_value() or number < 0:
                return None, {}, f"nvidia.com/gpu: {text} is not a whole number of GPUs"
            key, n = WHOLE_GPU, int(number)
        if n == 0:
            continue
        if ref.field == "initContainers":
            init[key] = max(init.get(key, 0), n)
        else:
            regular[key] = regular.get(key, 0) + n
    merged = {k: max(regular.get(k, 0), init.get(k, 0)) for k in set(regular) | set(init)}
    if not merged:
        return None, {}, None
    # A pod runs on one node, so a rewritten pod's whole-GPU containers go with its slices.
    pool = decision.pool if decision.action == "rewrite" else whole_pool(pod, policy)
    return pool.name, merged, None


def workload_of(obj: dict, source: str, policy: Policy) -> Workload:
    meta = obj.get("metadata") if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) else {}
    kind = str(obj.get("kind")) if isinstance(obj, dict) else "?"
    name = str(meta.get("name") or meta.get("generateName") or "?")
    namespace = str(meta.get("namespace") or "")
    base = dict(source=source, kind=kind, namespace=namespace, name=name)
    try:
        pod, _ = pod_of(obj)
        replicas = replicas_of(obj)
        decision = decide(pod, policy)
        if kind == "DaemonSet":
            return Workload(
                **base,
                replicas=0,
                action="invalid",
                message="DaemonSet: one pod per node, not planned (plan its pods from the live cluster)",
            )
        pool, resources, problem = pod_resources(pod, decision, policy)
    except (UnsupportedObject, BadObject) as err:
        return Workload(**base, replicas=0, action="invalid", message=str(err))
    if problem:
        return Workload(**base, replicas=replicas, action="invalid", message=problem)
    if decision.action == "deny":
        return Workload(**base, replicas=replicas, action="deny", message=decision.message)
    message = decision.message or "; ".join(decision.warnings)
    if decision.action == "ignore":
        message = "skipped (gpu-rightsizer.io/skip)" if resources else "no nvidia.com/gpu request"
    return Workload(
        **base,
        replicas=replicas,
        action=decision.action,
        message=message,
        pool=pool,
        per_replica=tuple(sorted(resources.items())),
        assigned_profile=decision.assigned_profile,
    )


def load_documents(path: str) -> list[tuple[str, object]]:
    """(source label, document) for every object in a YAML/JSON file; List kinds expand."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as err:
        raise DemandError(f"cannot read {path}: {err}") from None
    try:
        if text.lstrip().startswith(("{", "[")):
            data = json.loads(text)
            docs = data if isinstance(data, list) else [data]
        else:
            docs = list(yaml.safe_load_all(text))
    except (ValueError, yaml.YAMLError) as err:
        raise DemandError(f"{path} is neither valid YAML nor JSON: {str(err).splitlines()[0]}") from None
    out = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List":
            out.extend((f"{path}#{i}.{j}", item) for j, item in enumerate(doc.get("items") or []))
        else:
            out.append((f"{path}#{i}", doc))
    return out


def manifest_files(paths: list[str]) -> list[str]:
    files = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(MANIFEST_SUFFIXES))
        elif os.path.exists(path):
            files.append(path)
        else:
            raise DemandError(f"{path}: no such file or directory")
    return files


def demand_from_manifests(paths: list[str], policy: Policy) -> Demand:
    demand = Demand()
    for path in manifest_files(paths):
        for source, doc in load_documents(path):
            demand.workloads.append(workload_of(doc, source, policy))
    return demand
