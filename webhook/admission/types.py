"""The admission.k8s.io/v1 wire types, as TypedDicts over the raw JSON dicts.

The pod stays a plain dict end to end: the kubernetes client's models drop fields they
do not know, and a webhook must hand back exactly what it was given plus its change.
"""

from __future__ import annotations

from typing import Any, TypedDict

ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_KIND = "AdmissionReview"


class GroupVersionKind(TypedDict, total=False):
    group: str
    version: str
    kind: str


class AdmissionRequest(TypedDict, total=False):
    uid: str
    kind: GroupVersionKind
    resource: dict[str, Any]
    subResource: str
    name: str
    namespace: str
    operation: str  # CREATE | UPDATE | DELETE | CONNECT
    userInfo: dict[str, Any]
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool
    options: dict[str, Any]


class Status(TypedDict, total=False):
    code: int
    message: str
    reason: str


class AdmissionResponse(TypedDict, total=False):
    uid: str
    allowed: bool
    status: Status
    patch: str  # base64 of the JSON Patch
    patchType: str
    warnings: list[str]


class AdmissionReview(TypedDict, total=False):
    apiVersion: str
    kind: str
    request: AdmissionRequest
    response: AdmissionResponse
