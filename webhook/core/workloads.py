"""Where the pod lives in each workload kind, so offline tools size the same pod the
API server will later send the webhook."""

from __future__ import annotations

from typing import Any

from webhook.core.errors import UnsupportedObject

# kind -> path of keys from the object to its pod template (None: the object is the pod)
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...] | None] = {
    "Pod": None,
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def pod_of(obj: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The pod an object describes, and the path to it. A template becomes a Pod dict
    that shares its metadata and spec with the template."""
    if not isinstance(obj, dict):
        raise UnsupportedObject(f"expected a Kubernetes object (a mapping), got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind not in POD_TEMPLATE_PATHS:
        raise UnsupportedObject(f"kind {str(kind)[:64]!r} has no pod; accepted: {', '.join(POD_TEMPLATE_PATHS)}")
    path = POD_TEMPLATE_PATHS[kind]
    if path is None:
        return obj, ()
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise UnsupportedObject(f"{kind} has no pod template at .{'.'.join(path)}")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": node.get("metadata") or {}, "spec": node.get("spec") or {}}
    return pod, path


def with_pod(obj: dict[str, Any], path: tuple[str, ...], pod: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with the pod at ``path`` replaced by ``pod`` (copies along the path only)."""
    if not path:
        return pod
    head, *rest = path
    if not rest:
        template = dict(obj[head])
        template["metadata"] = pod["metadata"]
        template["spec"] = pod["spec"]
        return {**obj, head: template}
    return {**obj, head: with_pod(obj[head], tuple(rest), pod)}
