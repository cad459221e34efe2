"""Decoding an AdmissionReview request, and the response constructors.

Two kinds of failure are kept apart (as kopf does): a bad *request* (not JSON, not an
admission.k8s.io/v1 AdmissionReview, no uid) is answered with HTTP 4xx, because there is
no review to answer; a bad *object* inside a good request is answered with a
well-formed AdmissionReview that refuses it (HTTP 200, allowed: false, status.code 400).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson

from webhook.admission.types import (
    ADMISSION_API_VERSION,
    ADMISSION_KIND,
    AdmissionRequest,
    AdmissionResponse,
    AdmissionReview,
)
from webhook.core.errors import RequestError
from webhook.core.text import quote_value

# Kubernetes stores at most 1.5 MiB per object; a review carries the object (and, on
# UPDATE, the old one) plus a little envelope, so 3 MiB bounds any real request.
MAX_BODY_BYTES = 3 * 1024 * 1024
# The API server cuts each warning to 256 characters and, past 4 KiB in all, cuts them
# again and drops the rest (k8s.io/apiserver/pkg/endpoints/filters/warning.go:
# truncateItemRunes, truncateAtTotalRunes). A pod with 1,000 multi-GPU containers made
# 1,000 warnings (150 KB of response); we send what fits and say how many were left out.
_MAX_WARNING_CHARS = 250
_MAX_WARNINGS_TOTAL = 4096 - 256


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def decode_review(body: bytes) -> AdmissionReview:
    """Parse and check the envelope; the object inside is checked by the decision."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise RequestError(400, f"body is not valid JSON: {err}") from None
    if not isinstance(review, dict):
        raise RequestError(400, f"body must be a JSON object (an AdmissionReview), not a JSON {_type_name(review)}")
    if review.get("apiVersion") != ADMISSION_API_VERSION or review.get("kind") != ADMISSION_KIND:
        raise RequestError(
            400,
            f"apiVersion/kind must be {ADMISSION_API_VERSION}/{ADMISSION_KIND}, "
            f"got {quote_value(review.get('apiVersion'))}/{quote_value(review.get('kind'))}",
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise RequestError(400, f"request must be an object, not {_type_name(request)}")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > 128:
        raise RequestError(400, "request.uid must be a non-empty string of at most 128 characters")
    for name, kind in (("kind", dict), ("operation", str), ("dryRun", bool), ("namespace", str), ("subResource", str)):
        if name in request and request[name] is not None and not isinstance(request[name], kind):
            raise RequestError(400, f"request.{name} must be a {_type_name(kind())}, not {_type_name(request[name])}")
    return review  # type: ignore[return-value] # the envelope is checked above; the rest is the decision's


def is_pod_create(request: AdmissionRequest) -> bool:
    kind = request.get("kind") or {}
    return (
        request.get("operation") == "CREATE"
        and kind.get("group", "") == ""
        and kind.get("kind") == "Pod"
        and not request.get("subResource")
    )


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_WARNING_CHARS else text[: _MAX_WARNING_CHARS - 3] + "..."


def allowed(uid: str, patch: list[dict[str, Any]] | None = None, warnings: Sequence[str] = ()) -> AdmissionResponse:
    return with_uid(uid, allowed_fields(patch, warnings))


def allowed_fields(patch: Sequence[dict[str, Any]] | None = None, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """An allowing response without its uid: the part that depends on the pod alone,
    which webhook/admission/memo.py keeps for pods seen again."""
    response: dict[str, Any] = {"allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode("ascii")
    if warnings:
        response["warnings"] = _bounded_warnings(warnings)
    return response


def with_uid(uid: str, fields: dict[str, Any]) -> AdmissionResponse:
    # uid first, as the API server's own responses and our fixtures have it.
    return {"uid": uid, **fields}  # type: ignore[typeddict-item]


def _bounded_warnings(warnings: Sequence[str]) -> list[str]:
    lines: list[str] = []
    total = 0
    for i, warning in enumerate(warnings):
        line = _one_line("gpu-rightsizer: " + warning)
        if total + len(line) > _MAX_WARNINGS_TOTAL:
            lines.append(f"gpu-rightsizer: {len(warnings) - i} more warnings not shown")
            break
        lines.append(line)
        total += len(line)
    return lines


def denied(uid: str, message: str, code: int = 400) -> AdmissionResponse:
    return with_uid(uid, denied_fields(message, code))


def denied_fields(message: str, code: int = 400) -> dict[str, Any]:
    reason = "BadRequest" if code == 400 else "Forbidden"
    return {"allowed": False, "status": {"code": code, "reason": reason, "message": "gpu-rightsizer: " + message}}


def review_of(response: AdmissionResponse) -> AdmissionReview:
    return {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}
