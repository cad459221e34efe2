"""The policy in force in one worker, with its answer source."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from webhook.admission.answer import AnswerSource, PlainAnswers
from webhook.admission.capacity_answers import CapacityAnswers
from webhook.admission.memo import DecisionMemo
from webhook.core.policy import Policy, resolve_policy

if TYPE_CHECKING:
    from webhook.serving.cluster_watch import CapacityFeed


class PolicyHolder:
    """The policy in force and its answer source: a DecisionMemo, or with capacity.mode on a
    CapacityAnswers reading the worker's capacity view; swapped whole (one reference
    assignment) on reload, so a request always sees one complete policy and only its answers."""

    def __init__(self, path: str | None, policy: Policy | None = None, capacity: CapacityFeed | None = None):
        self.path = path
        self.capacity = capacity
        self._lock = threading.Lock()
        self._initial = policy or resolve_policy(path)
        self._answers = self._source(self._initial)

    def _source(self, policy: Policy) -> AnswerSource:
        if policy.capacity.enabled and self.capacity is not None:
            self.capacity.ensure_started(self._policy_now, policy.capacity.max_staleness)
            return CapacityAnswers(policy, self.capacity.view)
        return DecisionMemo(PlainAnswers(policy))

    def _policy_now(self) -> Policy:
        answers = getattr(self, "_answers", None)  # None while __init__ builds the first source
        return answers.policy if answers is not None else self._initial

    @property
    def policy(self) -> Policy:
        return self._answers.policy

    @property
    def answers(self) -> AnswerSource:
        """The answer source for the policy in force (read once per request)."""
        return self._answers

    def replace(self, policy: Policy) -> None:
        with self._lock:
            self._answers = self._source(policy)
