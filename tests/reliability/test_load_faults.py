"""Load and faults against a real `gpu-rightsizer serve` (short versions; bench/soak.py
runs the long soak): steady load, a worker killed with SIGKILL, a graceful restart
(SIGHUP), each under load from an API-server-like keep-alive client (loadgen.py)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.loadgen import LoadGenerator
from tests.support.served import peer_ports, rss_kib, start_server

SOAK_SECONDS = float(os.environ.get("GPU_RIGHTSIZER_SOAK_SECONDS", 30))
# Worker RSS may grow while caches warm up; over the last two thirds of a steady soak it
# must level off. 16 MiB over 20 s of 100 rps is ~8 bytes a request: a leak of one pod
# dict per request (3.5 KB) would be 7 MB, so it would show at 2x the soak.
RSS_GROWTH_LIMIT_KIB = 16 * 1024


@pytest.fixture
def fresh_server(tmp_path):
    live = start_server(tmp_path, workers=2)
    yield live
    live.stop()


def _rss(server) -> dict[int, int]:
    return {pid: rss_kib(pid) for pid in server.worker_pids()}


def test_soak_steady_load_fails_nothing_and_memory_levels_off(fresh_server, capsys):
    pids = fresh_server.worker_pids()
    gen = LoadGenerator(fresh_server, rps=100, connections=4).start()
    time.sleep(SOAK_SECONDS / 3)  # warm-up: imports, first allocations, TLS sessions
    rss_start = _rss(fresh_server)
    time.sleep(SOAK_SECONDS * 2 / 3)
    rss_end = _rss(fresh_server)
    result = gen.stop()
    with capsys.disabled():
        print(f"\nsoak {SOAK_SECONDS:.0f} s at 100 rps, 4 connections, 2 workers: {result.summary()}")
        print(f"worker RSS KiB after warm-up {rss_start} -> end {rss_end}")
    assert not result.failures, result.summary()
    assert result.ok >= 100 * SOAK_SECONDS * 0.9, result.summary()
    assert fresh_server.worker_pids() == pids, "a worker was restarted during the soak"
    for pid in pids:
        assert rss_end[pid] - rss_start[pid] < RSS_GROWTH_LIMIT_KIB, (rss_start, rss_end)


def test_sigkill_of_a_worker_fails_only_its_in_flight_requests(fresh_server, capsys):
    pids = fresh_server.worker_pids()
    gen = LoadGenerator(fresh_server, rps=100, connections=8).start()
    time.sleep(2)
    # The worker holding most of the client's connections (workers do not split them
    # evenly; one may hold all 8).
    victim = max(pids, key=lambda pid: len(peer_ports(pid, fresh_server.port)))
    victim_ports = peer_ports(victim, fresh_server.port)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replacement = fresh_server.wait_for_workers(exclude={victim}, timeout=15)
    replaced_after = time.monotonic() - killed_at
    time.sleep(2)
    result = gen.stop()
    in_flight = [r for r in result.in_flight_at(killed_at) if r.port in victim_ports]
    with capsys.disabled():
        print(
            f"\nSIGKILL of 1 of 2 workers at 100 rps, 8 connections ({len(victim_ports)} on the victim, "
            f"{len(in_flight)} request(s) in flight on it; a replacement forked after {replaced_after:.1f} s): "
            f"{result.summary()}; failures sent at "
            f"{[f'{(r.started - killed_at) * 1000:+.1f} ms' for r in result.failures]} from the kill"
        )
    assert replacement - pids and len(replacement) == 2, "gunicorn did not replace the killed worker"
    assert victim_ports, "the victim held none of the client's connections: nothing was tested"
    for failure in result.failures:
        # Only requests that were on the killed worker's connections when it died.
        assert failure.port in victim_ports and failure.started <= killed_at + 0.5, (failure, victim_ports)
    assert len(result.failures) <= len(victim_ports), result.summary()
    assert result.ok > 300, result.summary()


@pytest.mark.parametrize(
    "rps, connections",
    [(100, 8), (4, 8)],
    ids=["busy-connections", "idle-connections"],  # 4 rps: each connection idles 2 s, gunicorn's stop linger
)
def test_sighup_graceful_restart_fails_nothing(fresh_server, capsys, rps, connections):
    old = fresh_server.worker_pids()
    gen = LoadGenerator(fresh_server, rps=rps, connections=connections).start()
    time.sleep(2)
    os.kill(fresh_server.master_pid, signal.SIGHUP)
    new = fresh_server.wait_for_workers(exclude=old, timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in old):
        time.sleep(0.1)
    time.sleep(2)
    result = gen.stop()
    with capsys.disabled():
        print(f"\nSIGHUP at {rps} rps, {connections} connections: {result.summary()}")
    assert not (new & old)
    assert not result.failures, result.summary()
    assert result.ok >= rps * 4, result.summary()
