"""Prometheus metrics, correct across gunicorn's worker processes.

`serve` points PROMETHEUS_MULTIPROC_DIR at a fresh private directory before any worker
starts; prometheus-client then keeps each worker's values in files there, gunicorn's
`child_exit` hook marks a dead worker's files (gunicorn_conf.py), and /metrics sums all
of them with MultiProcessCollector — whichever worker answers the scrape. Without the
variable (tests, `mutate`), the process's own registry is used.

Seconds to certificate expiry is computed at scrape time from the certificate being
served, not stored: a stored gauge would go stale between reloads.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

OUTCOMES = ("mutated", "unchanged", "denied", "error")

ADMISSIONS = Counter(
    "gpu_rightsizer_admissions_total",
    "Admission requests answered, by outcome (mutated, unchanged, denied, error) and the "
    "decision's action (rewrite, whole-gpu, unchanged, ignore, deny, none).",
    ["outcome", "action"],
)
RIGHTSIZED = Counter(
    "gpu_rightsizer_rightsized_pods_total",
    "Pods given a MIG profile (or kept on a whole GPU), by pool and profile.",
    ["pool", "profile"],
)
DURATION = Histogram(
    "gpu_rightsizer_admission_duration_seconds",
    "Time to answer one admission request, from body read to response built.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
DECISION_MEMO = Counter(
    "gpu_rightsizer_decision_memo_total",
    "Pod creates by how the decision was found: hit (the same pod, outside its per-pod "
    "fields, was decided before under this policy), miss (decided and remembered), skipped "
    "(too large to key; decided).",
    ["result"],
)
BAD_REQUESTS = Counter(
    "gpu_rightsizer_bad_requests_total",
    "Requests to /mutate refused before admission (not an AdmissionReview), by HTTP status.",
    ["code"],
)
POLICY_RELOADS = Counter(
    "gpu_rightsizer_policy_reloads_total",
    "Policy file changes seen on disk, by result (success: now in force; failure: invalid, "
    "the previous policy stays).",
    ["result"],
)
CERT_RELOADS = Counter(
    "gpu_rightsizer_certificate_reloads_total",
    "Serving certificate changes seen on disk, by result.",
    ["result"],
)

for _outcome in OUTCOMES:
    ADMISSIONS.labels(_outcome, "none")
for _result in ("hit", "miss", "skipped"):
    DECISION_MEMO.labels(_result)
for _result in ("success", "failure"):
    POLICY_RELOADS.labels(_result)
    CERT_RELOADS.labels(_result)


# Labelled children by label values: `.labels()` validates and joins its arguments on
# every call (a third of observe_admission's time, cProfile); the child it returns is the
# same object each time, and its multiprocess value re-checks the pid on every inc, so a
# child cached before gunicorn forks still writes to the worker's own file. The label
# values are bounded (outcomes x actions, and the policies' pools x profiles).
_ADMISSION_CHILDREN: dict[tuple[str, str], Counter] = {}
_RIGHTSIZED_CHILDREN: dict[tuple[str, str], Counter] = {}
_MEMO_CHILDREN = {result: DECISION_MEMO.labels(result) for result in ("hit", "miss", "skipped")}


def observe_admission(outcome: str, action: str, seconds: float, pool: str | None = None,
                      profile: str | None = None, memo: str = "") -> None:
    key = (outcome, action)
    child = _ADMISSION_CHILDREN.get(key)
    if child is None:
        child = _ADMISSION_CHILDREN[key] = ADMISSIONS.labels(outcome, action)
    child.inc()
    DURATION.observe(seconds)
    if memo:
        _MEMO_CHILDREN[memo].inc()
    if pool and profile:
        key = (pool, profile)
        child = _RIGHTSIZED_CHILDREN.get(key)
        if child is None:
            child = _RIGHTSIZED_CHILDREN[key] = RIGHTSIZED.labels(pool, profile)
        child.inc()


class _CertificateExpiry:
    """Collector: seconds until the served certificate's notAfter, read when scraped."""

    def __init__(self, not_after: Callable[[], dt.datetime | None]):
        self._not_after = not_after

    def collect(self):
        not_after = self._not_after()
        if not_after is None:
            return
        remaining = GaugeMetricFamily(
            "gpu_rightsizer_certificate_expiry_seconds",
            "Seconds until the serving certificate expires (negative once it has).",
        )
        remaining.add_metric([], not_after.timestamp() - time.time())
        yield remaining
        stamp = GaugeMetricFamily(
            "gpu_rightsizer_certificate_not_after_timestamp_seconds",
            "The serving certificate's notAfter, as a Unix time.",
        )
        stamp.add_metric([], not_after.timestamp())
        yield stamp


def render(cert_not_after: Callable[[], dt.datetime | None] = lambda: None) -> tuple[bytes, str]:
    """The /metrics body and content type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(_CertificateExpiry(cert_not_after))
        return generate_latest(registry), CONTENT_TYPE_LATEST
    body = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(_CertificateExpiry(cert_not_after))
    return body + generate_latest(extra), CONTENT_TYPE_LATEST
