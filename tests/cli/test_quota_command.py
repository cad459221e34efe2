"""`gpu-rightsizer quota -f FILE`: per-profile MIG quota items from a GPU quota (the live
NAMESPACE form is exercised against a real API server in tests/e2e)."""

from __future__ import annotations

import subprocess
import sys

import kubernetes_validate
import yaml

GPU_QUOTA = """\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ResourceQuota
    metadata: {name: team-gpus, namespace: ml-team}
    spec:
      hard: {requests.nvidia.com/gpu: "2", requests.cpu: "64"}
      scopeSelector:
        matchExpressions: [{scopeName: PriorityClass, operator: In, values: [gpu-rightsizer-inference]}]
  - apiVersion: v1
    kind: ResourceQuota
    metadata: {name: cpu-only, namespace: ml-team}
    spec: {hard: {requests.cpu: "8"}}
"""


def quota(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", "quota", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_a_gpu_quota_becomes_per_profile_mig_items_with_its_scope():
    done = quota("-f", "-", stdin=GPU_QUOTA)
    assert done.returncode == 0, done.stderr
    (translated,) = list(yaml.safe_load_all(done.stdout))
    kubernetes_validate.validate(translated, "1.36.0", strict=True)
    assert translated["metadata"]["name"] == "team-gpus-mig" and translated["metadata"]["namespace"] == "ml-team"
    assert translated["spec"]["hard"] == {
        "requests.nvidia.com/mig-1g.10gb": "14",
        "requests.nvidia.com/mig-1g.20gb": "8",
        "requests.nvidia.com/mig-2g.20gb": "6",
        "requests.nvidia.com/mig-3g.40gb": "4",
        "requests.nvidia.com/mig-4g.40gb": "2",
        "requests.nvidia.com/mig-7g.80gb": "2",
    }
    assert translated["spec"]["scopeSelector"]["matchExpressions"][0]["scopeName"] == "PriorityClass"
    assert "can exceed it" in done.stdout  # the comment says what the bound does not guarantee


def test_no_gpu_quota_is_an_error_that_says_what_was_looked_for(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text("apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: x}\nspec: {hard: {pods: '3'}}\n")
    done = quota("-f", str(path))
    assert done.returncode == 1 and "requests.nvidia.com/gpu" in done.stderr and done.stdout == ""


def test_namespace_and_file_are_one_or_the_other():
    assert quota().returncode == 2
    assert quota("ns", "-f", "x.yaml").returncode == 2


def test_an_unreadable_file_is_a_clear_error():
    done = quota("-f", "/nonexistent/q.yaml")
    assert done.returncode == 2 and "cannot read /nonexistent/q.yaml" in done.stderr
