"""The mutation: a decision applied to a pod, as pure functions on raw dicts.

Nothing here mutates its input. Every function copies only what it changes and shares
the rest by reference, so that ``webhook.core.patch.diff`` can skip untouched subtrees by
identity and a 200 KB pod costs no more than a small one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from webhook.core import annotations as ann
from webhook.core.catalog import MigProfile
from webhook.core.constants import GPU_RESOURCE, MIG_RESOURCE_PREFIX
from webhook.core.decision import ContainerRef, Decision
from webhook.core.errors import BadObject
from webhook.core.policy import Policy, Pool, WorkloadClass, profile_node_requirements


def _checked(value: object, kind: type, path: str) -> Any:
    """``value`` when it is absent or a ``kind``. The fields merged into here are read
    only on a rewrite, so decide() has not looked at them; a wrong type (an affinity that
    is a string) is a malformed pod to refuse by name, not a TypeError or a silently
    mangled merge (list("abc") is ['a', 'b', 'c'])."""
    if value is not None and not isinstance(value, kind):
        shape = "an object" if kind is dict else "a list"
        raise BadObject(path, f"must be {shape}, not {type(value).__name__}")
    return value


def rename_gpu_resource(container: dict[str, Any], new_key: str) -> dict[str, Any]:
    """nvidia.com/gpu -> ``new_key`` (value 1) in limits and requests, wherever it was."""
    resources = dict(container.get("resources") or {})
    for part in ("limits", "requests"):
        amounts = resources.get(part)
        if amounts and GPU_RESOURCE in amounts:
            renamed = {k: v for k, v in amounts.items() if k != GPU_RESOURCE}
            renamed[new_key] = "1"
            resources[part] = renamed
    return {**container, "resources": resources}


def _has_content(term: object) -> bool:
    return isinstance(term, dict) and bool(term.get("matchExpressions") or term.get("matchFields"))


def merge_required_node_affinity(
    affinity: dict[str, Any] | None, requirements: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """AND ``requirements`` into every required nodeSelectorTerm.

    Kubernetes ORs the terms, so a new term of our own would let the pod schedule on any
    node matching it alone; adding our expressions to each term keeps every alternative
    the pod had while requiring ours in all of them. An empty term matches no node, and
    AND-ing into it must keep it matching none, so it is left as it is.
    """
    if not requirements:
        return affinity
    path = "spec.affinity"
    affinity = dict(_checked(affinity, dict, path) or {})
    path += ".nodeAffinity"
    node_affinity = dict(_checked(affinity.get("nodeAffinity"), dict, path) or {})
    path += ".requiredDuringSchedulingIgnoredDuringExecution"
    required = dict(_checked(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), dict, path) or {})
    path += ".nodeSelectorTerms"
    terms = _checked(required.get("nodeSelectorTerms"), list, path) or []
    if not terms:
        merged = [{"matchExpressions": [dict(r) for r in requirements]}]
    else:
        merged = [
            _and_into_term(t, requirements, f"{path}[{i}]") if _has_content(t) else t for i, t in enumerate(terms)
        ]
    required["nodeSelectorTerms"] = merged
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    affinity["nodeAffinity"] = node_affinity
    return affinity


def _and_into_term(term: dict[str, Any], requirements: list[dict[str, Any]], path: str = "term") -> dict[str, Any]:
    expressions = list(_checked(term.get("matchExpressions"), list, f"{path}.matchExpressions") or [])
    for req in requirements:
        if req not in expressions:
            expressions.append(dict(req))
    return {**term, "matchExpressions": expressions}


def tolerates(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``existing`` already tolerates every taint ``wanted`` tolerates."""
    if not isinstance(existing, dict):
        return False
    e_key, w_key = existing.get("key", ""), wanted.get("key", "")
    e_op = existing.get("operator") or "Equal"
    w_op = wanted.get("operator") or "Equal"
    if e_key and e_key != w_key:
        return False
    if not e_key and e_op != "Exists":
        return False
    e_effect = existing.get("effect", "")
    if e_effect and e_effect != wanted.get("effect", ""):
        return False
    if e_op == "Exists":
        # A bounded NoExecute toleration does not cover an unbounded one.
        return existing.get("tolerationSeconds") in (None, wanted.get("tolerationSeconds"))
    return (
        w_op == "Equal"
        and existing.get("value", "") == wanted.get("value", "")
        and existing.get("tolerationSeconds") == wanted.get("tolerationSeconds")
    )


def merge_tolerations(existing: list[Any] | None, wanted: Iterable[dict[str, Any]]) -> list[Any]:
    merged = list(existing or [])
    for tol in wanted:
        if not any(tolerates(e, tol) for e in merged):
            merged.append(dict(tol))
    return merged


def apply_priority_class(spec: dict[str, Any], workload_class: WorkloadClass | None, override: bool) -> dict[str, Any]:
    """Set priorityClassName from the workload class, keeping the API server's Priority
    plugin content: it refuses a pod whose spec.priority or preemptionPolicy differ from
    what the class gives, so those are written from the policy when it knows them and
    removed (for the plugin to recompute) when it does not."""
    if workload_class is None or not workload_class.priority_class_name:
        return spec
    current = spec.get("priorityClassName")
    if current and (not override or current == workload_class.priority_class_name):
        return spec
    spec = {**spec, "priorityClassName": workload_class.priority_class_name}
    if workload_class.priority is not None:
        spec["priority"] = workload_class.priority
    else:
        spec.pop("priority", None)
    if workload_class.preemption_policy is not None:
        spec["preemptionPolicy"] = workload_class.preemption_policy
    else:
        spec.pop("preemptionPolicy", None)
    return spec


def _with_containers(spec: dict[str, Any], refs: tuple[ContainerRef, ...], new_key: str) -> dict[str, Any]:
    spec = dict(spec)
    for fld in {r.field for r in refs}:
        containers = list(spec[fld])
        for ref in refs:
            if ref.field == fld:
                containers[ref.index] = rename_gpu_resource(containers[ref.index], new_key)
        spec[fld] = containers
    return spec


def node_requirements(decision: Decision, policy: Policy) -> list[dict[str, Any]]:
    # Only a rewrite asks for node requirements, and a rewrite names its pool and profile.
    pool, profile = cast(Pool, decision.pool), cast(MigProfile, decision.profile)
    return profile_node_requirements(policy, pool, profile)


def _annotate(metadata: dict[str, Any], decision: Decision) -> dict[str, Any]:
    annotations = dict(metadata.get("annotations") or {})
    annotations[ann.ASSIGNED_PROFILE] = decision.assigned_profile
    annotations[ann.DECISION] = decision.message
    return {**metadata, "annotations": annotations}


def mutate_pod(pod: dict[str, Any], decision: Decision, policy: Policy) -> dict[str, Any]:
    """The pod as ``decision`` leaves it; ``pod`` itself is not modified."""
    if decision.action not in ("rewrite", "whole-gpu"):
        return pod
    mutated = {**pod, "metadata": _annotate(pod.get("metadata") or {}, decision)}
    if decision.action == "whole-gpu":
        return mutated
    pool, profile = cast(Pool, decision.pool), cast(MigProfile, decision.profile)  # a rewrite names both
    if pool.strategy == "single":
        # The single strategy's MIG devices are nvidia.com/gpu: the request stays as it is
        # and the node affinity alone pins the profile.
        spec = dict(pod["spec"])
    else:
        spec = _with_containers(pod["spec"], decision.containers, MIG_RESOURCE_PREFIX + profile.name)
    affinity = merge_required_node_affinity(spec.get("affinity"), node_requirements(decision, policy))
    if affinity is not None:
        spec["affinity"] = affinity
    wanted = policy.tolerations + (decision.workload_class.tolerations if decision.workload_class else ())
    if wanted:
        spec["tolerations"] = merge_tolerations(_checked(spec.get("tolerations"), list, "spec.tolerations"), wanted)
    spec = apply_priority_class(spec, decision.workload_class, policy.override_priority_class)
    mutated["spec"] = spec
    return mutated
