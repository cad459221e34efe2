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

import atexit
import bisect
import datetime as dt
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from webhook import settings
from webhook.core.outcomes import RECORDED_RESULTS, MemoResult, RecordedAction, RecordedResult

OUTCOMES = RECORDED_RESULTS

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
    "Policy file changes seen on disk, by result (success: now in force; failure: invalid, the previous policy stays).",
    ["result"],
)
CAPACITY_DECISIONS = Counter(
    "gpu_rightsizer_capacity_decisions_total",
    "Sized pods decided with capacity.mode on, by how the capacity view chose: free (a fitting "
    "slice was free), full (none was: the static choice, or a denial by capacity.whenFull), stale "
    "(the view was older than capacity.maxStaleness: static choice), no-view (the watch has not "
    "synced yet: static choice).",
    ["result"],
)
CAPACITY_WATCH = Counter(
    "gpu_rightsizer_capacity_watch_total",
    "The capacity watcher's lists and watch ends, by kind (nodes, pods) and result (list, "
    "expired: the resourceVersion was too old, relisted; error: retried with backoff).",
    ["kind", "result"],
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


# Admissions are counted in memory and written into prometheus-client's values in
# batches: the five value writes of one admission (each a lock, a getpid(2) and a write
# into the multiprocess mmap) took ~11 us of a ~100 us request in a loop over the whole
# app, more than the decision it counts. A request appends one tuple to a deque (atomic,
# no lock); flush() folds them into the counters once a second (a daemon thread per
# process), before every scrape and at exit. So /metrics may lag another worker by up to
# FLUSH_SECONDS, and a worker killed with SIGKILL loses at most that much of its counts.
FLUSH_SECONDS = 1.0
_pending: deque = deque()
_flush_lock = threading.Lock()
_flusher_started = False
_BOUNDS = DURATION._upper_bounds  # as Histogram.observe finds a bucket: first bound >= value


def _after_fork_in_child() -> None:
    # Threads do not survive fork, and the parent's pending admissions are not ours.
    global _flusher_started
    _flusher_started = False
    _pending.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def observe_admission(
    outcome: RecordedResult,
    action: RecordedAction,
    seconds: float,
    pool: str | None = None,
    profile: str | None = None,
    memo: MemoResult = "",
) -> None:
    if not _flusher_started:
        _start_flusher()
    _pending.append((outcome, action, seconds, pool, profile, memo))


def _start_flusher() -> None:
    global _flusher_started
    with _flush_lock:
        if _flusher_started:
            return
        _flusher_started = True
    atexit.register(flush)
    threading.Thread(target=_flush_forever, name="metrics-flush", daemon=True).start()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        flush()


def flush() -> None:
    """Fold the pending admissions into the metrics."""
    with _flush_lock:
        counts: dict[tuple, int] = {}
        buckets = [0] * len(_BOUNDS)  # the last bound is +Inf: every duration has a bucket
        total_seconds = 0.0
        while True:
            try:
                outcome, action, seconds, pool, profile, memo = _pending.popleft()
            except IndexError:
                break
            key = ("a", outcome, action)
            counts[key] = counts.get(key, 0) + 1
            if pool and profile:
                key = ("r", pool, profile)
                counts[key] = counts.get(key, 0) + 1
            if memo:
                key = ("m", memo)
                counts[key] = counts.get(key, 0) + 1
            buckets[bisect.bisect_left(_BOUNDS, seconds)] += 1
            total_seconds += seconds
        if not counts:
            return
        for key, n in counts.items():
            metric = ADMISSIONS if key[0] == "a" else RIGHTSIZED if key[0] == "r" else DECISION_MEMO
            metric.labels(*key[1:]).inc(n)
        DURATION._sum.inc(total_seconds)
        for value, n in zip(DURATION._buckets, buckets):
            if n:
                value.inc(n)


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


class _CapacityAge:
    """Collector: the age of the capacity view of the worker that answers the scrape."""

    def __init__(self, age: Callable[[], float | None]):
        self._age = age

    def collect(self):
        age = self._age()
        if age is None:
            return
        gauge = GaugeMetricFamily(
            "gpu_rightsizer_capacity_view_age_seconds",
            "Seconds since the capacity view's last successful list, watch event or bookmark "
            "(+Inf before the first sync); above capacity.maxStaleness decisions are static.",
        )
        gauge.add_metric([], age)
        yield gauge


def render(
    cert_not_after: Callable[[], dt.datetime | None] = lambda: None,
    capacity_age: Callable[[], float | None] = lambda: None,
) -> tuple[bytes, str]:
    """The /metrics body and content type."""
    flush()
    if settings.metrics_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(_CertificateExpiry(cert_not_after))
        registry.register(_CapacityAge(capacity_age))
        return generate_latest(registry), CONTENT_TYPE_LATEST
    body = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(_CertificateExpiry(cert_not_after))
    extra.register(_CapacityAge(capacity_age))
    return body + generate_latest(extra), CONTENT_TYPE_LATEST
