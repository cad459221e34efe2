"""gpu-rightsizer's errors: one hierarchy under :class:`RightsizerError`.

Each is also a ``ValueError`` (``InstallError`` a ``RuntimeError``, in
webhook/certs/install.py), as before the hierarchy existed, so ``except ValueError`` still
catches them. What each one means to a caller:

- :class:`RequestError`: the HTTP request is not an AdmissionReview we can answer; HTTP
  4xx, no review is answered.
- :class:`BadObject`: the pod inside a good request is malformed; the review is answered,
  refused with status.code 400.
- :class:`InvalidAnnotation`: a gpu-rightsizer annotation has a value we cannot read; the
  decision turns it into a denial (status.code 400, see docs/failure-modes.md).
- :class:`PolicyError`: the policy file is invalid; `serve` refuses to start, a reload
  keeps the previous policy.
- :class:`UnsupportedObject`: an offline tool (`mutate`, `plan`) was given an object that
  holds no pod.

The planner's ``PlanError`` and ``DemandError`` (webhook/planning) and the certificate
installer's ``InstallError`` derive from the same base.
"""

from __future__ import annotations

from webhook.core.text import quote_value


class RightsizerError(Exception):
    """Base of every error gpu-rightsizer raises on purpose."""


class RequestError(RightsizerError, ValueError):
    """The HTTP request is not an AdmissionReview we can answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class BadObject(RightsizerError, ValueError):
    """The pod itself is malformed (a field of the wrong type): not something a real API
    server sends, and not something to guess about."""

    def __init__(self, path: str, problem: str):
        self.path = path
        super().__init__(f"{path}: {problem}")


class InvalidAnnotation(RightsizerError, ValueError):
    """An annotation's value is not accepted; names the annotation, the value (quoted and
    shortened, so a pod author cannot forge log lines or inflate responses with it) and
    what is accepted."""

    def __init__(self, annotation: str, value: object, accepted: str):
        self.annotation = annotation
        self.value = value
        self.accepted = accepted
        super().__init__(f"annotation {annotation}={quote_value(value)} is invalid: expected {accepted}")


class PolicyError(RightsizerError, ValueError):
    """The policy is invalid; the message starts with the path of the bad field."""


class UnsupportedObject(RightsizerError, ValueError):
    """The object is not a kind that holds a pod (or not a Kubernetes object at all)."""
