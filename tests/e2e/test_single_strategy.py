"""A `single`-strategy pool end to end: the real gpu-rightsizer webhook (gunicorn, TLS)
called by a real kube-apiserver, and kube-scheduler binding the pods onto fake nodes
labelled the way GPU feature discovery labels single-strategy MIG nodes
(nvidia.com/gpu.product=<product>-MIG-<profile>, MIG devices exposed as nvidia.com/gpu;
NVIDIA/gpu-feature-discovery mig-strategy.go, migStrategySingle.GenerateLabels).

An 8B bf16 server with 4 x 8k contexts needs 21.2 GiB <= 0.9 x 39.25 GiB: it must land on
the 3g.40gb node, not the 1g.20gb one the weights-only estimate picks — and a pod that
gives only model-size does land there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from controlplane import ManagedProcess, free_port, make_serving_cert, wait_for, wait_for_port

from tests.support.fixtures import validate_pod

ROOT = Path(__file__).resolve().parents[2]

NAMESPACE = "single-strategy"
WEBHOOK = "e2e-single-strategy"
PRODUCT = "NVIDIA-H100-80GB-HBM3"
POLICY = f"""
pools:
  - name: h100-single
    gpuModel: H100-80GB
    strategy: single
    nodeSelector: {{nvidia.com/gpu.product: {PRODUCT}}}
nodeAffinity:
  - {{key: nvidia.com/mig.capable, operator: In, values: ["true"]}}
tolerations:
  - {{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}
"""
SERVING = {
    "gpu-rightsizer.io/model": "llama-3.1-8b",
    "gpu-rightsizer.io/precision": "bf16",
    "gpu-rightsizer.io/context-length": "8k",
    "gpu-rightsizer.io/max-concurrency": "4",
}


def gfd_single_labels(profile: str, memory_mib: int, count: int) -> dict:
    """The labels GFD's single strategy writes (product rewritten, MIG device's memory)."""
    return {
        "nvidia.com/gpu.product": f"{PRODUCT}-MIG-{profile}",
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.memory": str(memory_mib),
        "nvidia.com/mig.strategy": "single",
        "nvidia.com/mig.capable": "true",
    }


def pod(name: str, annotations: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "server", "image": "vllm/vllm-openai:v0.6.0", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ]
        },
    }


def test_single_strategy_pool_schedules_onto_the_gfd_labelled_node(control_plane, tmp_path):
    cert = make_serving_cert(tmp_path / "certs")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port()
    server = ManagedProcess.start(
        "webhook",
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "serve",
            "--policy",
            str(policy),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--cert-file",
            str(cert.cert_file),
            "--key-file",
            str(cert.key_file),
            "--workers",
            "1",
            "--threads",
            "2",
        ],
        tmp_path / "webhook.log",
        cwd=ROOT,
    )
    taint = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    nodes = {
        "gfd-single-3g40": gfd_single_labels("3g.40gb", 40448, 2),
        "gfd-single-1g20": gfd_single_labels("1g.20gb", 20096, 4),
    }
    with server:
        wait_for_port(port, process=server)
        control_plane.create_namespace(NAMESPACE)
        for name, labels in nodes.items():
            control_plane.make_fake_gpu_node(
                name, labels=labels, taints=taint, allocatable={"nvidia.com/gpu": labels["nvidia.com/gpu.count"]}
            )
        control_plane.apply(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": WEBHOOK},
                "webhooks": [
                    {
                        "name": "rightsize.e2e-single.gpu-rightsizer.io",
                        "clientConfig": {"url": f"https://127.0.0.1:{port}/mutate", "caBundle": cert.ca_bundle_b64},
                        "rules": [
                            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                        ],
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                        "admissionReviewVersions": ["v1"],
                        "sideEffects": "None",
                        "failurePolicy": "Fail",
                        "reinvocationPolicy": "IfNeeded",
                        "timeoutSeconds": 5,
                    }
                ],
            }
        )
        try:

            def webhook_active() -> bool:
                out = control_plane.kubectl(
                    "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod("probe", SERVING))
                ).stdout
                return json.loads(out)["metadata"]["annotations"].get("gpu-rightsizer.io/assigned-profile") == "3g.40gb"

            wait_for(webhook_active, timeout=30, message="the webhook to take effect")
            control_plane.apply(
                pod("llama-8b-serving", SERVING), pod("llama-8b-weights", {"gpu-rightsizer.io/model": "llama-3.1-8b"})
            )

            def scheduled(name: str):
                stored = control_plane.get_json("pod", name, "-n", NAMESPACE)
                return stored if stored["spec"].get("nodeName") else None

            serving = wait_for(lambda: scheduled("llama-8b-serving"), timeout=60, message="the serving pod to be bound")
            weights = wait_for(
                lambda: scheduled("llama-8b-weights"), timeout=60, message="the weights-only pod to be bound"
            )
        finally:
            control_plane.kubectl("delete", "mutatingwebhookconfiguration", WEBHOOK, check=False)
            control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
            for name in nodes:
                control_plane.kubectl("delete", "node", name, "--wait=false", check=False)

    assert serving["spec"]["nodeName"] == "gfd-single-3g40"
    assert weights["spec"]["nodeName"] == "gfd-single-1g20"
    container = serving["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert container["resources"]["requests"] == {"nvidia.com/gpu": "1"}
    terms = serving["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    products = [e for t in terms for e in t["matchExpressions"] if e["key"] == "nvidia.com/gpu.product"]
    assert products == [{"key": "nvidia.com/gpu.product", "operator": "In", "values": [f"{PRODUCT}-MIG-3g.40gb"]}]
    annotations = serving["metadata"]["annotations"]
    assert annotations["gpu-rightsizer.io/assigned-profile"] == "3g.40gb"
    assert annotations["gpu-rightsizer.io/decision"].endswith(
        "weights 14.96 GiB + KV 4.00 GiB (8192 x 4) + 2.25 GiB -> 21.2 GiB <= 0.9 x 39.25 GiB of 3g.40gb"
    )
    assert weights["metadata"]["annotations"]["gpu-rightsizer.io/assigned-profile"] == "1g.20gb"
    validate_pod(serving)
    validate_pod(weights)
