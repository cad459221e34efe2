"""The CLI: `mutate` shows offline what the webhook does; `catalog` prints the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonpatch
import yaml

from tests.support.fixtures import validate_pod
from webhook.core.catalog import builtin_catalog

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args], capture_output=True, text=True, input=stdin, timeout=60, cwd=ROOT
    )


def test_mutate_a_pod_prints_the_mutated_pod_and_the_decision_on_stderr():
    result = cli("mutate", "examples/llm-7b-pod.yaml")
    assert result.returncode == 0, result.stderr
    pod = yaml.safe_load(result.stdout)
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.20gb"] == "1"
    assert pod["metadata"]["annotations"]["gpu-rightsizer.io/assigned-profile"] == "1g.20gb"
    assert "Warning: gpu-rightsizer: Pod/llm-7b: nvidia.com/gpu: 1 -> nvidia.com/mig-1g.20gb" in result.stderr
    validate_pod(pod)


def test_mutate_patch_of_a_deployment_points_into_its_pod_template():
    result = cli("mutate", "examples/llm-13b-deployment.yaml", "--patch")
    assert result.returncode == 0, result.stderr
    patch = json.loads(result.stdout)
    paths = [op["path"] for op in patch]
    assert "/spec/template/spec/containers/0/resources/limits/nvidia.com~1mig-3g.40gb" in paths
    original = yaml.safe_load((ROOT / "examples/llm-13b-deployment.yaml").read_text())
    patched = jsonpatch.apply_patch(original, patch)
    assert patched["spec"]["template"]["metadata"]["annotations"]["gpu-rightsizer.io/assigned-profile"] == "3g.40gb"


def test_mutate_a_cronjob_reads_its_job_template():
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "@daily",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "metadata": {"annotations": {"gpu-rightsizer.io/gpu-memory": "30Gi"}},
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {"name": "t", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
                            ],
                        },
                    }
                }
            },
        },
    }
    result = cli("mutate", "-", "-o", "json", stdin=json.dumps(cronjob))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    limits = out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/mig-3g.40gb": "1"}


def test_a_refused_pod_exits_non_zero_with_the_webhooks_message():
    pod = yaml.safe_load((ROOT / "examples/llm-7b-pod.yaml").read_text())
    pod["metadata"]["annotations"]["gpu-rightsizer.io/model-size"] = "huge"
    result = cli("mutate", "-", stdin=yaml.safe_dump(pod))
    assert result.returncode == 1
    assert 'refused: annotation gpu-rightsizer.io/model-size="huge" is invalid' in result.stderr
    assert result.stdout == ""


def test_multi_document_input_is_handled_document_by_document():
    docs = (
        (ROOT / "examples/llm-7b-pod.yaml").read_text()
        + "\n---\n"
        + (ROOT / "examples/llm-13b-deployment.yaml").read_text()
    )
    result = cli("mutate", "-", stdin=docs)
    assert result.returncode == 0, result.stderr
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout)] == ["Pod", "Deployment"]


def test_an_unsupported_kind_is_a_clear_error():
    result = cli("mutate", "-", stdin="apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    assert result.returncode == 2
    assert "kind 'Service' has no pod" in result.stderr


def test_mutate_with_an_invalid_policy_names_the_field(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("pools: [{name: p, gpuModel: H100-80GB, profiles: [2g.40gb]}]\n")
    result = cli("mutate", "examples/llm-7b-pod.yaml", "--policy", str(bad))
    assert result.returncode == 2
    assert "pools[0].profiles[0]: '2g.40gb' is not a MIG profile of H100-80GB" in result.stderr


def test_catalog_prints_every_model_and_real_memory():
    result = cli("catalog")
    assert result.returncode == 0
    for key in builtin_catalog().keys:
        assert key in result.stdout
    single = cli("catalog", "NVIDIA-H200")
    assert "1g.18gb" in single.stdout and "16.00" in single.stdout and "source:" in single.stdout
    assert cli("catalog", "V100").returncode == 2


def test_plan_without_the_plan_extra_says_how_to_install_it():
    code = "import sys; sys.modules['ortools'] = None; from webhook.cli.main import main; sys.exit(main(['plan', 'examples']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "gpu-rightsizer plan needs the 'plan' extra" in result.stderr
    assert "pip install 'gpu-rightsizer[plan]'" in result.stderr
