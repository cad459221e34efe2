"""The policy in force in one worker, with its decision memo."""

from __future__ import annotations

import threading

from webhook.admission.answer import PlainAnswers
from webhook.admission.memo import DecisionMemo
from webhook.core.policy import Policy, resolve_policy


class PolicyHolder:
    """The policy in force and its DecisionMemo; swapped whole (one reference assignment)
    on reload, so a request always sees one complete policy and only its answers."""

    def __init__(self, path: str | None, policy: Policy | None = None):
        self.path = path
        self._answers = DecisionMemo(PlainAnswers(policy or resolve_policy(path)))
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        return self._answers.policy

    @property
    def answers(self) -> DecisionMemo:
        """The answer source for the policy in force (read once per request)."""
        return self._answers

    def replace(self, policy: Policy) -> None:
        with self._lock:
            self._answers = DecisionMemo(PlainAnswers(policy))
