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
- :class:`InvalidSetting`: a serving engine's flag or env value (webhook/core/engine_args.py)
  we cannot read; an :class:`InvalidAnnotation`, so ``onInvalidAnnotation`` applies to it.
- :class:`TableError`: a row of the architecture table (built-in, or a policy's
  ``architectures:``) is invalid; the policy turns it into a :class:`PolicyError`.
- :class:`UnsizedCheckpoint`: a served model name is a quantized format whose weight size
  the table cannot derive; the `model` annotation turns it into an :class:`InvalidAnnotation`.

The planner's ``PlanError`` and ``DemandError`` (webhook/planning) and the certificate
installer's ``InstallError`` derive from the same base.
"""

from __future__ import annotations

from webhook.core.constants import GPU_MEMORY, MODEL, PRECISION
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


class InvalidSetting(InvalidAnnotation):
    """A flag or env value of the serving engine that does not parse; caught as
    InvalidAnnotation, so the policy's onInvalidAnnotation applies to it as to an annotation."""

    def __init__(self, where: str, flag: str, value: object, accepted: str):
        self.annotation = flag
        self.value = value
        self.accepted = accepted
        RightsizerError.__init__(self, f"{flag} {quote_value(value)} in {where} is invalid: expected {accepted}")


class TableError(RightsizerError, ValueError):
    """A row of the architecture table is invalid; the message starts with the path of the bad field."""


class UnsizedCheckpoint(RightsizerError, ValueError):
    """A recognised quantized format whose size the table cannot derive."""

    def __init__(self, name: str, fmt: str, base: str | None):
        self.fmt = fmt
        self.base = base
        of = f" of {base}" if base else ""
        super().__init__(
            f"a {fmt} checkpoint{of}, whose weight size the table does not derive: describe it with "
            f"{MODEL} (its base model) and {PRECISION}, or state the need with {GPU_MEMORY}"
        )
