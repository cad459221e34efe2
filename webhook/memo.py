"""Decide a controller's pods once: ``answer_pod`` memoised per policy.

A Deployment, Job or StatefulSet creates its pods from one template, so the API server
sends us the same pod again and again, differing only in fields the decision never reads:
the name, uid and managedFields (timestamps), and the service-account token volume the
ServiceAccount admission plugin names at random per pod (`kube-api-access-xxxxx`, in
spec.volumes and every container's volumeMounts). ``answer_pod`` is a pure function of
(pod, policy), so a pod equal to an earlier one outside those fields gets the earlier
answer (tests/test_memo.py holds the cached and computed answers equal, and changes
every dropped field to show the decision does not read it).

The key is a 128-bit BLAKE2b digest of the pod, as orjson re-encodes it, without those
fields. Building it costs about an eighth of deciding a typical pod (bench/bench_decide.py),
and grows with the pod where the decision does not, so pods over ``MAX_POD_BYTES`` are
decided without it. One memo belongs to one Policy: a reload brings a new, empty one.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import orjson

from webhook.admission import Answer, answer_pod
from webhook.policy import Policy

# Per-pod fields the decision and the mutation never read (see the module docstring).
PER_POD_METADATA = ("name", "uid", "creationTimestamp", "managedFields", "resourceVersion")
PER_POD_SPEC = ("volumes",)
PER_POD_CONTAINER = ("volumeMounts",)
CONTAINER_LISTS = ("containers", "initContainers")

MAX_ENTRIES = 1024
# Above this body size the key costs nearly what deciding does, and it grows with the pod
# where the decision does not (bench/bench_decide.py: 24 vs 33 µs for the 20 KB pod).
MAX_POD_BYTES = 16 * 1024


def _without(mapping: dict, names: tuple[str, ...]) -> dict:
    # copy() and pop() run in C; a comprehension over the keys took twice as long.
    out = mapping.copy()
    for name in names:
        out.pop(name, None)
    return out


def pod_key(pod: dict) -> bytes | None:
    """The digest of ``pod`` without its per-pod fields; None when it cannot be encoded
    (deeper than orjson writes: such a pod is simply decided every time)."""
    keyed = pod.copy()
    metadata = pod.get("metadata")
    if isinstance(metadata, dict):
        keyed["metadata"] = _without(metadata, PER_POD_METADATA)
    spec = pod.get("spec")
    if isinstance(spec, dict):
        spec = _without(spec, PER_POD_SPEC)
        for field in CONTAINER_LISTS:
            containers = spec.get(field)
            if isinstance(containers, list):
                spec[field] = [_without(c, PER_POD_CONTAINER) if isinstance(c, dict) else c for c in containers]
        keyed["spec"] = spec
    try:
        encoded = orjson.dumps(keyed)
    except orjson.JSONEncodeError:
        return None
    return hashlib.blake2b(encoded, digest_size=16).digest()


class DecisionMemo:
    """``answer_pod(pod)`` for one policy, from memory for a pod seen before. The Answer
    returned is shared between callers: not to be changed.

    An answer is kept from a pod's second sighting on: a stream of pods that never repeat
    (each made by hand) then costs a 16-byte key per pod, not a kept decision, whose
    objects the garbage collector would walk over and over (with every answer kept, a
    4,096-pod cycle through the whole app in process spent ~13 µs per request in garbage
    collection, against ~1 µs with none kept).
    Reads take no lock (a dict lookup is atomic under the GIL); inserts and evictions
    (oldest first) hold one. A malformed pod's denial is remembered like any answer."""

    def __init__(self, policy: Policy, max_entries: int = MAX_ENTRIES, max_pod_bytes: int = MAX_POD_BYTES):
        self.policy = policy
        self.max_entries = max_entries
        self.max_pod_bytes = max_pod_bytes
        self._entries: OrderedDict[bytes, Answer] = OrderedDict()
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def answer(self, pod: object, pod_bytes: int) -> tuple[Answer, str]:
        """(answer_pod(pod, policy), "hit" | "miss" | "skipped"). ``pod_bytes``: the
        request body's size, a cheap bound on what keying the pod would cost."""
        key = pod_key(pod) if pod_bytes <= self.max_pod_bytes and isinstance(pod, dict) else None
        if key is None:
            return answer_pod(pod, self.policy), "skipped"
        answer = self._entries.get(key)
        if answer is not None:
            return answer, "hit"
        answer = answer_pod(pod, self.policy)
        with self._lock:
            if key not in self._seen:
                if len(self._seen) >= 4 * self.max_entries:
                    self._seen.clear()
                self._seen.add(key)
            elif key not in self._entries:
                if len(self._entries) >= self.max_entries:
                    self._entries.popitem(last=False)
                self._entries[key] = answer
        return answer, "miss"
