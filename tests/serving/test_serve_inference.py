"""Inference sizing through the real `gpu-rightsizer serve` (gunicorn, TLS, verified CA),
with a policy that has a single-strategy pool: what the API server would receive."""

from __future__ import annotations

import base64
import json

import jsonpatch
import pytest
import requests

from tests.support.fixtures import gpu_pod, review_for, validate_pod
from tests.support.server import RunningServer

POLICY = """
pools:
  - name: h100-single
    gpuModel: H100-80GB
    strategy: single
    nodeSelector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
"""
SERVING = {
    "gpu-rightsizer.io/model": "meta-llama/Llama-3.1-8B-Instruct",
    "gpu-rightsizer.io/precision": "bf16",
    "gpu-rightsizer.io/context-length": "8k",
    "gpu-rightsizer.io/max-concurrency": "4",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serve-inference")
    (workdir / "policy.yaml").write_text(POLICY)
    running = RunningServer(workdir, "--workers", "1", "--policy", str(workdir / "policy.yaml"))
    yield running
    running.stop()


def post(server, review) -> dict:
    reply = requests.post(server.url + "/mutate?timeout=10s", json=review, verify=str(server.ca), timeout=10)
    assert reply.status_code == 200
    return reply.json()["response"]


def test_inference_pod_is_pinned_with_the_arithmetic_in_the_warning(server):
    pod = gpu_pod(SERVING)
    response = post(server, review_for(pod))
    assert response["allowed"] is True
    assert response["warnings"][0] == (
        "gpu-rightsizer: nvidia.com/gpu: 1 on nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3-MIG-3g.40gb on pool "
        'h100-single (H100-80GB) for container "server": weights 14.96 GiB + KV 4.00 GiB (8192 x 4) + 2.25 GiB '
        "-> 21.2 GiB <= 0.9 x 39.25 GiB of 3g.40gb"
    )
    mutated = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    validate_pod(mutated)
    assert mutated["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    again = post(server, review_for(mutated, uid="uid-2"))
    assert again["allowed"] is True and "patch" not in again


def test_a_bad_inference_annotation_is_refused_naming_it(server):
    response = post(server, review_for(gpu_pod({**SERVING, "gpu-rightsizer.io/context-length": "8k\nx"})))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert 'gpu-rightsizer.io/context-length="8k\\nx" is invalid' in message and "8k, 128k" in message
