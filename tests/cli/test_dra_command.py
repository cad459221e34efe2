"""`gpu-rightsizer dra deviceclasses`: DeviceClasses per MIG profile, valid for Kubernetes 1.36
(the DRA e2e test applies them to a real API server and scheduler); `catalog --from-cluster`'s
argument errors (its reading of a cluster is in tests/e2e/test_dra.py)."""

from __future__ import annotations

import subprocess
import sys

import kubernetes_validate
import yaml

POLICY = """\
pools:
  - {name: h100, gpuModel: H100-80GB, profiles: [1g.10gb, 3g.40gb]}
  - {name: a100, gpuModel: A100-80GB, profiles: [1g.10gb, 2g.20gb]}
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webhook.cli", *args], capture_output=True, text=True, timeout=120)


def test_device_classes_validate_and_dedupe_profiles(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    done = cli("dra", "deviceclasses", "--policy", str(path))
    assert done.returncode == 0, done.stderr
    classes = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert [c["spec"]["extendedResourceName"] for c in classes] == [
        "nvidia.com/mig-1g.10gb",
        "nvidia.com/mig-3g.40gb",
        "nvidia.com/mig-2g.20gb",
    ]
    for obj in classes:
        # kubernetes-validate's 1.36 schema knows DeviceClass.spec.extendedResourceName
        kubernetes_validate.validate(obj, "1.36.0", strict=True)
    only = cli("dra", "deviceclasses", "--policy", str(path), "--pool", "a100")
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(only.stdout) if d] == [
        "mig-1g.10gb.gpu.nvidia.com",
        "mig-2g.20gb.gpu.nvidia.com",
    ]


def test_device_classes_errors(tmp_path):
    unknown = cli("dra", "deviceclasses", "--pool", "nope")
    assert unknown.returncode == 2 and "no pool named nope" in unknown.stderr and "h100-80" in unknown.stderr
    bad_driver = cli("dra", "deviceclasses", "--driver", "Bad_Driver")
    assert bad_driver.returncode == 2 and "not a DNS subdomain" in bad_driver.stderr
    path = tmp_path / "single.yaml"
    path.write_text("pools:\n  - {name: s, gpuModel: A100-40GB, strategy: single, profiles: [3g.20gb]}\n")
    single = cli("dra", "deviceclasses", "--policy", str(path))
    assert single.returncode == 1 and "no MIG profile" in single.stderr
    assert cli("dra").returncode == 2  # a subcommand is required


def test_catalog_from_cluster_takes_no_model():
    done = cli("catalog", "H100-80GB", "--from-cluster")
    assert done.returncode == 2 and "--from-cluster takes no GPU_MODEL" in done.stderr
