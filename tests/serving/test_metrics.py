"""/metrics of a real `gpu-rightsizer serve --workers 3` over TLS: the counts of all
workers add up, also after a worker dies, and a restart starts from zero."""

from __future__ import annotations

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.server import DENIED, IGNORED, MUTATED, UNCHANGED, LiveServer, review, total
from webhook.serving import metrics
from webhook.serving.app import create_app

MIX = [("mutated", MUTATED)] * 4 + [("unchanged", UNCHANGED)] * 2 + [("denied", DENIED), ("unchanged", IGNORED)]


def _send(server: LiveServer, n: int, connections: int = 8) -> dict[str, int]:
    """n reviews from ``connections`` threads, each request on a new TLS connection so the
    kernel spreads them over the workers. Returns the expected count per outcome."""
    expected: dict[str, int] = {}
    jobs = [MIX[i % len(MIX)] for i in range(n)]
    for outcome, _ in jobs:
        expected[outcome] = expected.get(outcome, 0) + 1

    def one(job):
        _, obj = job
        r = requests.post(
            server.url + "/mutate",
            json=review(obj, str(uuid.uuid4())),
            verify=server.ca_file,
            headers={"Connection": "close"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.json()["response"]["allowed"]

    with ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(one, jobs))
    assert results.count(False) == expected.get("denied", 0)
    return expected


def _wait_for_total(server, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        samples = server.metrics()
        if total(samples, "gpu_rightsizer_admissions_total") == n or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_counts_add_up_across_three_workers(tmp_path):
    n = 120
    with LiveServer(tmp_path, workers=3, threads=2) as server:
        expected = _send(server, n)
        # Each worker folds its admissions into the shared files within a second
        # (metrics.FLUSH_SECONDS); from then on, every scrape sees all of them.
        _wait_for_total(server, n, timeout=3 * metrics.FLUSH_SECONDS + 2)
        for _ in range(5):  # whichever worker answers the scrape, it reports everyone's
            samples = server.metrics()
            assert total(samples, "gpu_rightsizer_admissions_total") == n
        for outcome, count in expected.items():
            assert total(samples, "gpu_rightsizer_admissions_total", outcome=outcome) == count, outcome
        assert total(samples, "gpu_rightsizer_admissions_total", outcome="error") == 0
        # Every pod create goes through the decision memo; MIX repeats 4 pods, so all
        # but each worker's first two sightings of a pod are answered from memory.
        memo = {r: total(samples, "gpu_rightsizer_decision_memo_total", result=r) for r in ("hit", "miss", "skipped")}
        assert sum(memo.values()) == n, memo
        assert memo["skipped"] == 0 and memo["miss"] <= 3 * 2 * 4 and memo["hit"] >= n - 3 * 2 * 4, memo
        assert total(samples, "gpu_rightsizer_admissions_total", action="ignore") == n // len(MIX)
        assert samples["gpu_rightsizer_admission_duration_seconds_count"] == n
        assert samples['gpu_rightsizer_admission_duration_seconds_bucket{le="+Inf"}'] == n
        assert (
            total(samples, "gpu_rightsizer_rightsized_pods_total", pool="h100-80", profile="1g.20gb")
            == expected["mutated"]
        )
        expiry = samples["gpu_rightsizer_certificate_expiry_seconds"]
        assert 364 * 86400 < expiry <= 365 * 86400

        # One JSON log line per admission, from more than one worker.
        admissions = [line for line in server.log_lines() if line["msg"] == "admission"]
        assert len(admissions) == n
        pids = {line["pid"] for line in admissions}
        assert len(pids) >= 2, pids

        # A worker killed outright: gunicorn replaces it, and its counts are kept.
        victim = next(iter(pids))
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)
        _send(server, 16)
        samples = _wait_for_total(server, n + 16)
        assert total(samples, "gpu_rightsizer_admissions_total") == n + 16
        assert samples["gpu_rightsizer_admission_duration_seconds_count"] == n + 16


def test_a_restart_starts_from_zero(tmp_path):
    with LiveServer(tmp_path, workers=2) as server:
        _send(server, 8)
        assert total(_wait_for_total(server, 8), "gpu_rightsizer_admissions_total") == 8
    with LiveServer(tmp_path, workers=2) as server:
        assert total(server.metrics(), "gpu_rightsizer_admissions_total") == 0
        assert server.metrics()['gpu_rightsizer_policy_reloads_total{result="failure"}'] == 0


def test_bad_requests_are_counted_by_status(tmp_path):
    with LiveServer(tmp_path, workers=1) as server:
        r = requests.post(
            server.url + "/mutate",
            data=b"{",
            headers={"Content-Type": "application/json"},
            verify=server.ca_file,
            timeout=10,
        )
        assert r.status_code == 400
        r = requests.post(
            server.url + "/mutate", data=b"x", headers={"Content-Type": "text/plain"}, verify=server.ca_file, timeout=10
        )
        assert r.status_code == 415
        samples = server.metrics()
        assert samples['gpu_rightsizer_bad_requests_total{code="400"}'] == 1
        assert samples['gpu_rightsizer_bad_requests_total{code="415"}'] == 1
        assert total(samples, "gpu_rightsizer_admissions_total") == 0


def test_an_internal_error_is_counted_and_admits_unchanged(monkeypatch):
    # The only way to make admit() raise is to break it; the app must still answer.
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr("webhook.serving.app.admit", broken)
    before = metrics.ADMISSIONS.labels("error", "none")._value.get()
    client = create_app().test_client()
    r = client.post("/mutate", json=review(MUTATED, "u-1"))
    assert r.status_code == 200
    body = r.get_json()["response"]
    assert body["allowed"] is True and "patch" not in body
    metrics.flush()
    assert metrics.ADMISSIONS.labels("error", "none")._value.get() == before + 1
    assert "gpu_rightsizer_admissions_total" in client.get("/metrics").get_data(as_text=True)


def test_batched_admissions_land_in_the_right_series():
    # What flush() folds in equals what Histogram.observe / Counter.inc would have written.
    metrics.flush()
    admissions = metrics.ADMISSIONS.labels("mutated", "rewrite")
    rightsized = metrics.RIGHTSIZED.labels("p-test", "1g.10gb")
    hits = metrics.DECISION_MEMO.labels("hit")
    before = (
        admissions._value.get(),
        rightsized._value.get(),
        hits._value.get(),
        [b.get() for b in metrics.DURATION._buckets],
        metrics.DURATION._sum.get(),
    )
    durations = [0.0001, 0.0005, 0.0007, 0.003, 7.0, 0.0005]
    for seconds in durations:
        metrics.observe_admission("mutated", "rewrite", seconds, "p-test", "1g.10gb", "hit")
    metrics.observe_admission("unchanged", "ignore", 0.0001)
    metrics.flush()
    assert admissions._value.get() == before[0] + len(durations)
    assert rightsized._value.get() == before[1] + len(durations)
    assert hits._value.get() == before[2] + len(durations)
    added = [b.get() - was for b, was in zip(metrics.DURATION._buckets, before[3])]
    bounds = metrics.DURATION._upper_bounds
    expected = [0] * len(bounds)
    for seconds in durations + [0.0001]:
        expected[next(i for i, bound in enumerate(bounds) if seconds <= bound)] += 1
    assert added == expected
    assert metrics.DURATION._sum.get() == pytest.approx(before[4] + sum(durations) + 0.0001)
