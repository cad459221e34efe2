"""The real-node tier: the image built from the Dockerfile, installed with `kubectl apply -k`,
GPU pods started by a real kubelet (see README.md beside this file).

The `node` fixture builds what is missing (build-control-plane.sh, build-node.sh, the image;
all cached in ~/.cache/gpu-rightsizer), starts one cluster for the tier and always tears it
down. A failed build or start FAILS the tier: it is never skipped or faked.

Environment:
  GPU_RIGHTSIZER_CACHE        where binaries, Go caches and image archives live
  GPU_RIGHTSIZER_E2E_KEEP=1   keep the node's work dir (component logs) after the run
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))

from cluster import LAYOUT, NodeBinaries, RealNode  # noqa: E402
from image import BuiltImage, build_project_image  # noqa: E402

CACHE = Path(os.environ.get("GPU_RIGHTSIZER_CACHE", Path.home() / ".cache" / "gpu-rightsizer"))
BUILD_TIMEOUT_SECONDS = 60 * 60
NODE_NAME = "gpu-node-1"
# What GPU feature discovery labels an H100 80GB node with on the `mixed` MIG strategy
# (NVIDIA/k8s-device-plugin docs/gpu-feature-discovery); the default policy's pool selects
# nvidia.com/gpu.product and its affinity nvidia.com/mig.capable.
GFD_LABELS = {
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "nvidia.com/gpu.count": "2",
    "nvidia.com/gpu.memory": "81559",
    "nvidia.com/mig.capable": "true",
    "nvidia.com/mig.strategy": "mixed",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "node: real-node tier (image, kubectl apply -k, kubelet)")
    config.addinivalue_line("markers", "e2e: needs a real Kubernetes cluster (slow)")


def pytest_itemcollected(item: pytest.Item) -> None:
    # Also `e2e`, so `-m "not e2e"` leaves out every tier that needs a cluster.
    if HERE in Path(str(item.path)).resolve().parents:
        item.add_marker(pytest.mark.node)
        item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    first = next((i for i in items if "node" in getattr(i, "fixturenames", ())), None)
    if first is not None:  # it sets up the fixture: builds included
        first.add_marker(pytest.mark.timeout(3 * BUILD_TIMEOUT_SECONDS))


def _script(path: Path) -> str:
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(path)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{path.name} timed out after {BUILD_TIMEOUT_SECONDS}s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"{path.name} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-5000:]}", pytrace=False
        )
    print(f"\n{path.name} ({time.monotonic() - started:.0f}s):\n{done.stdout.strip()}")
    return done.stdout.strip().splitlines()[-1]


@dataclass
class NodeSession:
    node: RealNode
    image: BuiltImage

    @property
    def plane(self):
        return self.node.plane


@pytest.fixture(scope="package")
def node():
    k8s_bin = Path(_script(REPO / "tests" / "e2e" / "build-control-plane.sh"))
    runtime_bin, tools_bin, _ = _script(HERE / "build-node.sh").split(":")
    workdir = Path(tempfile.mkdtemp(prefix="gpu-rightsizer-node-"))
    try:
        image = build_project_image(
            CACHE / "node-images",
            CACHE / "node-images" / "python-3.11-slim-standin-bookworm.tar",
            workdir / "image-build.log",
        )
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    built = f"built in {image.build_seconds:.0f}s" if image.build_seconds else "reused from the cache"
    print(f"image {image.name}: {image.size}; {built}")
    real = RealNode(
        NodeBinaries(k8s_bin, Path(runtime_bin), Path(tools_bin)), workdir, node_name=NODE_NAME, labels=GFD_LABELS
    )
    try:
        real.start()
        started = time.monotonic()
        real.import_image(image.archive)
        print(
            f"node {NODE_NAME} Ready in {real.startup_seconds:.0f}s; "
            f"image imported into containerd in {time.monotonic() - started:.0f}s"
        )
        real.advertise(LAYOUT)
    except Exception as e:  # noqa: BLE001 - a failure with the components' logs
        logs = real.log_tails()
        real.stop()
        pytest.fail(f"the real node did not come up: {e}\n\n{logs}", pytrace=False)
    try:
        yield NodeSession(real, image)
    finally:
        real.stop()
        if os.environ.get("GPU_RIGHTSIZER_E2E_KEEP") == "1":
            print(f"node work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
