"""Hot reload of the policy file (polled by webhook/serving/reload.py's Watcher).

A valid new policy is swapped whole into the PolicyHolder; an invalid one is logged and
counted, and the last good policy stays in force (readiness is unaffected).
"""

from __future__ import annotations

import logging
import os

from webhook import settings
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy, parse_policy_yaml, read_policy_file
from webhook.serving import metrics
from webhook.serving.holder import PolicyHolder
from webhook.serving.logs import LOGGER
from webhook.serving.reload import Signature, file_signature

log = logging.getLogger(LOGGER)

# A directory private to one `serve` (set by it before forking) where workers keep the
# text of the last policy that validated. A worker (re)started while the file on disk is
# invalid (a SIGHUP, a worker replaced after a crash) starts from that, not from the
# older policy the master validated at start.
LAST_GOOD_POLICY = "last-good-policy.yaml"


def remember_good_policy(text: str) -> None:
    state = settings.state_dir()
    if not state:
        return
    target = os.path.join(state, LAST_GOOD_POLICY)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)  # atomic: another worker never reads half of it
    except OSError as err:
        log.warning("cannot keep the last good policy", extra={"fields": {"error": str(err)}})


def last_good_policy(path: str) -> Policy | None:
    state = settings.state_dir()
    if not state:
        return None
    try:
        with open(os.path.join(state, LAST_GOOD_POLICY), encoding="utf-8") as fh:
            return parse_policy_yaml(fh.read(), source=f"{path} (last good)")
    except (OSError, PolicyError):
        return None


class PolicyReloader:
    def __init__(self, holder, path: str):
        self.holder = holder
        self.path = path
        self._loaded = file_signature(path)
        self._failed: Signature | None = None

    @classmethod
    def start(cls, path: str, fallback: Policy, capacity=None) -> PolicyReloader:
        """A holder with the policy file as it is now, or else the last policy known good:
        the one a worker of this server last loaded, or ``fallback`` (validated by the
        master at start). The failure is counted and logged like a failed reload."""
        sig = file_signature(path)
        try:
            text, policy = read_policy_file(path)
        except PolicyError as err:
            known_good = last_good_policy(path)
            reloader = cls(PolicyHolder(path, known_good or fallback, capacity), path)
            reloader._loaded, reloader._failed = None, sig
            metrics.POLICY_RELOADS.labels("failure").inc()
            using = "the last policy a worker loaded" if known_good else "the policy validated at server start"
            log.error(
                f"policy file invalid at worker start; using {using}",
                extra={"fields": {"path": path, "error": str(err)}},
            )
            return reloader
        remember_good_policy(text)
        return cls(PolicyHolder(path, policy, capacity), path)

    def check(self) -> None:
        sig = file_signature(self.path)
        if sig == self._loaded or sig == self._failed:
            return
        try:
            text, policy = read_policy_file(self.path)
        except PolicyError as err:
            self._failed = sig
            metrics.POLICY_RELOADS.labels("failure").inc()
            log.error(
                "policy reload failed; keeping the previous policy",
                extra={"fields": {"path": self.path, "error": str(err)}},
            )
            return
        self.holder.replace(policy)
        remember_good_policy(text)
        self._loaded, self._failed = sig, None
        metrics.POLICY_RELOADS.labels("success").inc()
        log.info("policy reloaded", extra={"fields": {"path": self.path, "pools": [p.name for p in policy.pools]}})
