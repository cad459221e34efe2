"""Decide a controller's pods once: an answer source, memoised.

A Deployment, Job or StatefulSet creates its pods from one template, so the API server
sends us the same pod again and again, differing only in fields the decision never reads:
the name, uid and managedFields (timestamps), and the service-account token volume the
ServiceAccount admission plugin names at random per pod (`kube-api-access-xxxxx`, in
spec.volumes and every container's volumeMounts). An answer is a pure function of
(pod, policy), so a pod equal to an earlier one outside those fields gets the earlier
answer (tests/test_memo.py holds the cached and computed answers equal, and changes
every dropped field to show the decision does not read it).

The key is the pod, as orjson re-encodes it, without those fields: the bytes themselves,
not a digest of them, so a hit is exact equality (no collision to reason about), and the
dict's own hash of the bytes is the only hashing done (a BLAKE2b-128 digest of a typical
pod's 2.7 KB cost 3 µs of the key's 4 µs; the dict lookup with the bytes costs 0.7 µs).
The price is memory, bounded by ``MAX_KEY_BYTES``. Building the key grows with the pod
where the decision does not, so pods over ``MAX_POD_BYTES`` are decided without it. One
memo wraps one source, under one Policy: a reload brings a new, empty one.

The memo knows answers only through :class:`~webhook.admission.answer.AnswerSource`
(usually a ``PlainAnswers``), and is one itself: ``admit`` takes either.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import orjson

from webhook.admission.answer import Answer, AnswerSource
from webhook.core.outcomes import MemoResult
from webhook.core.policy import Policy

# Per-pod fields the decision and the mutation never read (see the module docstring).
PER_POD_METADATA = ("name", "uid", "creationTimestamp", "managedFields", "resourceVersion")
PER_POD_SPEC = ("volumes",)
PER_POD_CONTAINER = ("volumeMounts",)
CONTAINER_LISTS = ("containers", "initContainers")

MAX_ENTRIES = 1024
# Above this body size the key costs nearly what deciding does, and it grows with the pod
# where the decision does not (bench/bench_decide.py: 24 vs 33 µs for the 20 KB pod).
MAX_POD_BYTES = 16 * 1024
# The kept keys' bytes, all together: 1,024 keys of the typical pod's variants take 1.4
# MiB, of the 3-term-affinity pod's 2.4 MiB (bench/bench_decide.py); without this bound,
# 1,024 keys of pods just under MAX_POD_BYTES could take 16 MiB per worker.
MAX_KEY_BYTES = 4 * 1024 * 1024


def _without(mapping: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    # copy() and pop() run in C; a comprehension over the keys took twice as long.
    out = mapping.copy()
    for name in names:
        out.pop(name, None)
    return out


def pod_key(pod: dict[str, Any]) -> bytes | None:
    """``pod`` without its per-pod fields, as JSON bytes; None when it cannot be encoded
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
        return orjson.dumps(keyed)
    except orjson.JSONEncodeError:
        return None


class DecisionMemo:
    """An :class:`AnswerSource`: ``source``'s answer, from memory for a pod seen before.
    The Answer returned is shared between callers: not to be changed.

    An answer is kept from a pod's second sighting on: a stream of pods that never repeat
    (each made by hand) then costs one int per pod (the key's hash: two keys sharing one
    are merely both kept from their first sighting), not a kept decision, whose
    objects the garbage collector would walk over and over (with every answer kept, a
    4,096-pod cycle through the whole app in process spent ~13 µs per request in garbage
    collection, against ~1 µs with none kept).
    Reads take no lock (a dict lookup is atomic under the GIL); inserts and evictions
    (oldest first) hold one. A malformed pod's denial is remembered like any answer."""

    def __init__(
        self,
        source: AnswerSource,
        max_entries: int = MAX_ENTRIES,
        max_pod_bytes: int = MAX_POD_BYTES,
        max_key_bytes: int = MAX_KEY_BYTES,
    ):
        self.source = source
        self.max_entries = max_entries
        self.max_pod_bytes = max_pod_bytes
        self.max_key_bytes = max_key_bytes
        self._entries: OrderedDict[bytes, Answer] = OrderedDict()
        self._key_bytes = 0
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        return self.source.policy

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def key_bytes(self) -> int:
        """The kept keys' bytes, all together (at most ``max_key_bytes``)."""
        return self._key_bytes

    def answer(self, pod: object, pod_bytes: int, dry_run: bool = False) -> tuple[Answer, MemoResult]:
        """(the source's answer for ``pod``, "hit" | "miss" | "skipped"). ``pod_bytes``:
        the request body's size, a cheap bound on what keying the pod would cost."""
        key = pod_key(pod) if pod_bytes <= self.max_pod_bytes and isinstance(pod, dict) else None
        if key is None:
            return self.source.answer(pod, pod_bytes, dry_run)[0], "skipped"
        answer = self._entries.get(key)
        if answer is not None:
            return answer, "hit"
        answer = self.source.answer(pod, pod_bytes, dry_run)[0]
        with self._lock:
            if hash(key) not in self._seen:
                if len(self._seen) >= 4 * self.max_entries:
                    self._seen.clear()
                self._seen.add(hash(key))
            elif key not in self._entries and len(key) <= self.max_key_bytes:
                # (A key over the whole bound is not kept: it would only empty the memo
                # on its way out.) A copy of exactly its length: orjson's bytes keep
                # their working buffer (tracemalloc: ~16 KB held by a 1.4 KB key).
                key = bytes(memoryview(key))
                self._entries[key] = answer
                self._key_bytes += len(key)
                while len(self._entries) > self.max_entries or self._key_bytes > self.max_key_bytes:
                    self._key_bytes -= len(self._entries.popitem(last=False)[0])
        return answer, "miss"
