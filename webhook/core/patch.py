"""JSON Patch (RFC 6902) between a pod and its mutated copy.

Like controller-runtime's PatchResponseFromRaw, the patch is a diff of the original and
the mutated object, so it says exactly what changed and nothing else. The mutation
shares unchanged subtrees with the original by reference; this diff skips those by
identity, so its cost follows the size of the change, not of the pod (jsonpatch's
make_patch compares every field of a 200 KB pod). Tests check the result against
``jsonpatch.apply_patch``.
"""

from __future__ import annotations

from typing import Any

_ABSENT = object()


def escape_pointer_token(token: str) -> str:
    """RFC 6901: '~' -> '~0', '/' -> '~1' (nvidia.com/gpu -> nvidia.com~1gpu)."""
    if "~" not in token and "/" not in token:  # most keys: no new string, no method calls
        return token
    return token.replace("~", "~0").replace("/", "~1")


def diff(original: object, mutated: object, path: str = "") -> list[dict[str, Any]]:
    if original is mutated:
        return []
    if isinstance(original, dict) and isinstance(mutated, dict):
        ops: list[dict[str, Any]] = []
        for key in original:
            if key not in mutated:
                ops.append({"op": "remove", "path": f"{path}/{escape_pointer_token(key)}"})
        for key, value in mutated.items():
            # Most keys are shared by reference: skip them before building a path.
            before = original.get(key, _ABSENT)
            if before is value:
                continue
            child = f"{path}/{escape_pointer_token(key)}"
            if before is _ABSENT:
                ops.append({"op": "add", "path": child, "value": value})
            else:
                ops.extend(diff(before, value, child))
        return ops
    if isinstance(original, list) and isinstance(mutated, list) and len(mutated) >= len(original):
        ops = []
        for i, value in enumerate(original):
            if value is not mutated[i]:
                ops.extend(diff(value, mutated[i], f"{path}/{i}"))
        for value in mutated[len(original) :]:
            ops.append({"op": "add", "path": f"{path}/-", "value": value})
        return ops
    if type(original) is type(mutated) and original == mutated:
        return []
    return [{"op": "replace", "path": path, "value": mutated}]
