"""The policy in force in one worker, with its answer source."""

from __future__ import annotations

import threading

from webhook.admission.answer import AnswerSource, PlainAnswers
from webhook.admission.capacity_answers import CapacityAnswers
from webhook.admission.memo import DecisionMemo
from webhook.core.policy import Policy, resolve_policy
from webhook.core.quota import QuotaView
from webhook.serving.cluster_watch import CapacityFeed, watched_kinds


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
        kinds = watched_kinds(policy)
        if kinds and self.capacity is not None:
            self.capacity.ensure_started(self._policy_now, policy.capacity.max_staleness, kinds)
        if policy.capacity.enabled and self.capacity is not None:
            return CapacityAnswers(policy, self.capacity.view)
        return DecisionMemo(PlainAnswers(policy))

    def quota_view(self) -> QuotaView | None:
        """The latest view of the namespaces' GPU quotas, when the policy reads them."""
        if self._answers.policy.quota_mode == "off" or self.capacity is None:
            return None
        return self.capacity.quota_view()

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
