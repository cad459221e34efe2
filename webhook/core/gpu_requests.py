"""What GPU resources a pod holds: one reading, shared by the capacity view
(webhook/core/capacity.py) and the quota accounting (webhook/core/quota.py)."""

from __future__ import annotations

from typing import Any

from webhook.core.constants import GPU_RESOURCE, MIG_RESOURCE_PREFIX

# Pods in these phases hold nothing: the kubelet released their devices, and the quota
# plugin no longer charges them.
TERMINAL_PHASES = ("Succeeded", "Failed")


def is_gpu_resource(name: str) -> bool:
    return name == GPU_RESOURCE or name.startswith(MIG_RESOURCE_PREFIX)


def resource_count(value: object) -> int:
    """A count of a device resource ("2", 2); 0 for anything else."""
    text = str(value)
    return int(text) if text.isdigit() else 0


def pod_requests(pod: dict[str, Any]) -> dict[str, int]:
    """The GPU resources a pod holds: the sum over its containers, or an init container's if
    larger (the scheduler's effective request, which is also what the quota plugin charges);
    limits win over requests (for extended resources the two must be equal)."""

    def of(container: dict[str, Any]) -> dict[str, int]:
        resources = container.get("resources") if isinstance(container, dict) else None
        if not isinstance(resources, dict):
            return {}
        parts = [resources.get(p) for p in ("requests", "limits")]
        merged = {k: v for part in parts if isinstance(part, dict) for k, v in part.items()}
        return {
            k: resource_count(v)
            for k, v in merged.items()
            if isinstance(k, str) and is_gpu_resource(k) and resource_count(v)
        }

    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return {}
    total: dict[str, int] = {}
    for container in spec.get("containers") or ():
        for k, v in of(container).items():
            total[k] = total.get(k, 0) + v
    for container in spec.get("initContainers") or ():
        for k, v in of(container).items():
            total[k] = max(total.get(k, 0), v)
    return total
