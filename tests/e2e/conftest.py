"""Fixtures for the end-to-end suite: a real Kubernetes v1.36.3 control plane.

The `control_plane` fixture builds the binaries if needed (tests/e2e/
build-control-plane.sh; ~7 min cold, seconds when cached in
~/.cache/gpu-rightsizer) and starts one plane for the whole session. A failed
build or start FAILS the tests that need it: the suite never skips or fakes
the API server.

Environment:
  GPU_RIGHTSIZER_CACHE        where binaries and Go caches live (default ~/.cache/gpu-rightsizer)
  GPU_RIGHTSIZER_E2E_KEEP=1   keep the plane's temp dir (certs, logs) after the run
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # tests/e2e is not a package: make controlplane importable

from controlplane import ControlPlane  # noqa: E402

BUILD_SCRIPT = HERE / "build-control-plane.sh"
BUILD_TIMEOUT_SECONDS = 45 * 60  # cold build is ~7 min on 2 cores; CI allows 90 min
BUILD_OUTPUT_TAIL_LINES = 60


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test against a real Kubernetes control plane (slow)")


def pytest_itemcollected(item: pytest.Item) -> None:
    # Added at collection (before -m filtering) so `-m "not e2e"` deselects these.
    if HERE in Path(str(item.path)).resolve().parents:
        item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The session fixture (and so a cold build) is set up inside the first test
    # that uses it; give that one test a timeout that covers the build, so the
    # project-wide per-test timeout does not kill a cold CI run.
    first = next((i for i in items if "control_plane_binaries" in getattr(i, "fixturenames", ())), None)
    if first is not None:
        first.add_marker(pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + 600))


def build_control_plane() -> Path:
    """Run the build script; return the bin dir or fail the test with the output tail."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        partial = _text(e.stdout) + _text(e.stderr)
        pytest.fail(f"{BUILD_SCRIPT.name} timed out after {BUILD_TIMEOUT_SECONDS}s:\n{_tail(partial)}", pytrace=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(
            f"{BUILD_SCRIPT.name} failed (exit {result.returncode}); "
            f"the e2e suite needs the real binaries:\n{_tail(output)}",
            pytrace=False,
        )
    bin_dir = Path(result.stdout.strip().splitlines()[-1])
    print(f"\ncontrol plane binaries ready in {time.monotonic() - started:.1f}s: {bin_dir}")
    return bin_dir


def _text(output: bytes | str | None) -> str:
    # TimeoutExpired carries bytes even when run() was asked for text.
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _tail(text: str, lines: int = BUILD_OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def control_plane_binaries() -> Path:
    """The bin dir of the built control plane (built on first use), for a module that runs
    a plane of its own (e.g. one it restarts: test_capacity_watch_live.py)."""
    return build_control_plane()


@pytest.fixture(scope="session")
def control_plane(control_plane_binaries):
    """A running etcd + kube-apiserver + kube-scheduler + kube-controller-manager.

    Yields a controlplane.ControlPlane: .kubeconfig, .server, .token, .ca_file,
    .kubectl(...), .apply(...), .get_json(...), .create_namespace(...),
    .make_fake_gpu_node(...). Tests share it: use unique namespace/node names.
    """
    plane = ControlPlane(control_plane_binaries, keep_workdir=os.environ.get("GPU_RIGHTSIZER_E2E_KEEP") == "1")
    try:
        plane.start()
    except Exception as e:  # noqa: BLE001 - reported as a failure with the component logs
        pytest.fail(str(e), pytrace=False)
    print(f"control plane up in {plane.startup_seconds:.1f}s at {plane.server}")
    try:
        yield plane
    finally:
        plane.stop()
