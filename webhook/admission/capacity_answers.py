"""Answers under capacity.mode: each pod decided afresh with the latest capacity view.

No memo: the answer depends on the view, which changes with every pod we admit. The view
comes from a callable (webhook/serving/cluster_watch.py's watcher, or a fixed snapshot) and
is only read: an admission never waits on the API server. What this source admitted and the
view does not show yet is held as a reservation (webhook/core/capacity.py: settle), so pods
created together do not all pick the same last slice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from webhook.admission.answer import Answer, answer_pod
from webhook.core.capacity import CapacityRead, CapacityView, Reservation, reserved_counts, settle, slice_key
from webhook.core.catalog import MigProfile
from webhook.core.outcomes import MemoResult
from webhook.core.policy import Policy, Pool

# How long a reservation holds a slice when the view never shows its pod (another
# admission plugin refused it after us, or the watch is down): a few watch round trips.
RESERVATION_TTL = 15.0


class CapacityAnswers:
    """An AnswerSource (webhook/admission/answer.py) that reads a capacity view."""

    def __init__(
        self,
        policy: Policy,
        view: Callable[[], CapacityView | None],
        clock: Callable[[], float] = time.time,
        ttl: float = RESERVATION_TTL,
    ):
        self._policy = policy
        self._view = view
        self._clock = clock
        self._ttl = ttl
        self._reservations: list[Reservation] = []
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def reservations(self) -> int:
        return len(self._reservations)

    def answer(self, pod: object, pod_bytes: int, dry_run: bool = False) -> tuple[Answer, MemoResult]:
        now = self._clock()
        view = self._view()
        with self._lock:
            # One lock from reading the reservations to adding this pod's: two threads of one
            # worker never both take the last free slice.
            if self._reservations:
                self._reservations = settle(self._reservations, view, now, self._ttl)
            answer = answer_pod(pod, self._policy, CapacityRead(view, now, reserved_counts(self._reservations)))
            decision = answer.decision
            # A dry run (a preview) is never stored, so it holds no slice.
            if not dry_run and decision is not None and decision.action == "rewrite" and answer.result == "mutated":
                meta = cast("dict[str, Any]", pod).get("metadata") or {}
                key = slice_key(cast(Pool, decision.pool), cast(MigProfile, decision.profile))
                self._reservations.append(
                    Reservation(
                        str(meta.get("namespace") or ""),
                        str(meta.get("name") or ""),
                        str(meta.get("generateName") or ""),
                        key,
                        now,
                    )
                )
        return answer, ""
