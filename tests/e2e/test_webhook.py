"""gpu-rightsizer end to end: the real `gpu-rightsizer serve` behind a real
kube-apiserver v1.36.3, registered with the project's own MutatingWebhookConfiguration
(manifests/base) and PriorityClasses, driven with the real kubectl.

The cases run in file order; the last one stops the webhook.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from controlplane import ManagedProcess, free_port, make_serving_cert, stop_all, wait_for, wait_for_port

from tests.support.fixtures import validate_pod

ROOT = Path(__file__).resolve().parents[2]

from webhook.serving.logs import FLUSH_SECONDS  # noqa: E402

ON = "rightsized"  # opted in
OFF = "plain"  # not opted in
A = "gpu-rightsizer.io/"
WEBHOOK_CONFIG = ROOT / "manifests" / "base" / "mutatingwebhookconfiguration.yaml"
PRIORITY_CLASSES = ROOT / "manifests" / "base" / "priorityclasses.yaml"


def gpu_pod(name: str, annotations: dict | None = None, gpus: str = "1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {A + "model-size": "7b", **(annotations or {})}},
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "image": "vllm/vllm-openai:v0.6.0",
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": gpus}},
                }
            ]
        },
    }


def project_webhook_configuration(url: str, ca_bundle: str) -> dict:
    """manifests/base's MutatingWebhookConfiguration, pointed at the loopback server."""
    config = yaml.safe_load(WEBHOOK_CONFIG.read_text())
    for webhook in config["webhooks"]:
        webhook["clientConfig"] = {"url": url, "caBundle": ca_bundle}
    return config


class Webhook:
    """`gpu-rightsizer serve` on loopback, started and stopped by the tests."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.cert = make_serving_cert(workdir / "certs")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/mutate"
        self.process: ManagedProcess | None = None
        self.logs: list[Path] = []

    def start(self) -> None:
        log = self.workdir / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        self.process = ManagedProcess.start(
            "gpu-rightsizer",
            [
                sys.executable,
                "-m",
                "webhook.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--cert-file",
                str(self.cert.cert_file),
                "--key-file",
                str(self.cert.key_file),
                "--workers",
                "2",
            ],
            log,
            cwd=ROOT,
        )
        wait_for_port(self.port, process=self.process, timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            stop_all([self.process])
            self.process = None

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@pytest.fixture(scope="module")
def webhook(control_plane, tmp_path_factory):
    server = Webhook(tmp_path_factory.mktemp("webhook"))
    server.start()
    control_plane.kubectl("apply", "-f", str(PRIORITY_CLASSES))
    config = project_webhook_configuration(server.url, server.cert.ca_bundle_b64)
    control_plane.apply(config)
    control_plane.create_namespace(ON)
    control_plane.kubectl("label", "namespace", ON, "gpu-rightsizer.io/enabled=true")
    control_plane.create_namespace(OFF)

    def in_effect() -> bool:
        out = control_plane.kubectl(
            "create",
            "-n",
            ON,
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            input=json.dumps(gpu_pod("probe")),
            check=False,
        )
        return out.returncode == 0 and A + "assigned-profile" in json.loads(out.stdout)["metadata"].get(
            "annotations", {}
        )

    wait_for(in_effect, timeout=60, message="the gpu-rightsizer webhook to take effect")
    yield server
    server.stop()
    control_plane.kubectl("delete", "mutatingwebhookconfiguration", config["metadata"]["name"], check=False)
    for ns in (ON, OFF):
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def apply_pod(control_plane, namespace: str, pod: dict, *extra: str):
    return control_plane.kubectl("apply", "-n", namespace, *extra, "-f", "-", input=yaml.safe_dump(pod), check=False)


def test_a_7b_pod_is_stored_rewritten_with_the_priority_the_api_server_computed(control_plane, webhook):
    result = apply_pod(control_plane, ON, gpu_pod("llm-7b"))
    assert result.returncode == 0, result.stderr
    assert "Warning: gpu-rightsizer: nvidia.com/gpu: 1 -> nvidia.com/mig-1g.20gb" in result.stderr
    stored = control_plane.get_json("pod", "llm-7b", "-n", ON)
    container = stored["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi", "nvidia.com/mig-1g.20gb": "1"}
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "1Gi", "nvidia.com/mig-1g.20gb": "1"}
    terms = stored["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "nvidia.com/mig.capable", "operator": "In", "values": ["true"]},
                {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]},
            ]
        }
    ]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in stored["spec"]["tolerations"]
    # The Priority admission plugin ran around us and agrees with what we wrote.
    priority_class = control_plane.get_json("priorityclass", "gpu-rightsizer-inference")
    assert stored["spec"]["priorityClassName"] == "gpu-rightsizer-inference"
    assert stored["spec"]["priority"] == priority_class["value"] == 100000
    assert stored["spec"]["preemptionPolicy"] == priority_class.get("preemptionPolicy", "PreemptLowerPriority")
    annotations = stored["metadata"]["annotations"]
    assert annotations[A + "assigned-profile"] == "1g.20gb"
    assert "15.65 GiB fits 1g.20gb" in annotations[A + "decision"]
    validate_pod({k: v for k, v in stored.items() if k != "status"})


def test_a_training_pod_gets_a_never_preempting_class_that_the_api_server_accepts(control_plane, webhook):
    result = apply_pod(
        control_plane, ON, gpu_pod("trainer", {A + "workload-class": "training", A + "model-size": "13b"})
    )
    assert result.returncode == 0, result.stderr
    stored = control_plane.get_json("pod", "trainer", "-n", ON)
    priority_class = control_plane.get_json("priorityclass", "gpu-rightsizer-training")
    assert priority_class["preemptionPolicy"] == "Never" and priority_class["value"] != 0
    assert stored["spec"]["priorityClassName"] == "gpu-rightsizer-training"
    assert stored["spec"]["priority"] == priority_class["value"]
    assert stored["spec"]["preemptionPolicy"] == "Never"
    assert stored["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-3g.40gb"] == "1"


def test_the_same_pod_in_a_namespace_without_the_label_is_stored_untouched(control_plane, webhook):
    result = apply_pod(control_plane, OFF, gpu_pod("llm-7b"))
    assert result.returncode == 0 and "gpu-rightsizer" not in result.stderr
    stored = control_plane.get_json("pod", "llm-7b", "-n", OFF)
    assert stored["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert A + "assigned-profile" not in stored["metadata"]["annotations"]
    assert "affinity" not in stored["spec"] and "priorityClassName" not in stored["spec"]


def test_server_side_dry_run_prints_the_rewritten_pod_and_persists_nothing(control_plane, webhook):
    result = apply_pod(
        control_plane, ON, gpu_pod("preview", {A + "model-size": "13b"}), "--dry-run=server", "-o", "yaml"
    )
    assert result.returncode == 0, result.stderr
    assert "Warning: gpu-rightsizer: nvidia.com/gpu: 1 -> nvidia.com/mig-3g.40gb" in result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-3g.40gb"] == "1"
    assert printed["metadata"]["annotations"][A + "assigned-profile"] == "3g.40gb"
    missing = control_plane.kubectl("get", "pod", "preview", "-n", ON, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_the_pods_a_deployments_controllers_create_are_rewritten(control_plane, webhook):
    template = gpu_pod("ignored", {A + "model-size": "3b"})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "small-llm"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "small-llm"}},
            "template": {
                "metadata": {"labels": {"app": "small-llm"}, "annotations": template["metadata"]["annotations"]},
                "spec": template["spec"],
            },
        },
    }
    control_plane.kubectl("apply", "-n", ON, "-f", "-", input=yaml.safe_dump(deployment))

    def pods():
        items = control_plane.get_json("pods", "-n", ON, "-l", "app=small-llm")["items"]
        return items if len(items) == 2 else None

    created = wait_for(pods, timeout=60, message="the Deployment's two pods")
    for pod in created:
        assert pod["metadata"]["generateName"].startswith("small-llm-")
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"
        assert pod["metadata"]["annotations"][A + "assigned-profile"] == "1g.10gb"
        assert pod["spec"]["priority"] == 100000


def test_an_invalid_annotation_is_refused_with_the_webhooks_message(control_plane, webhook):
    result = apply_pod(control_plane, ON, gpu_pod("bad", {A + "model-size": "huge"}))
    assert result.returncode != 0
    assert 'admission webhook "pods.gpu-rightsizer.io" denied the request' in result.stderr
    assert 'gpu-rightsizer: annotation gpu-rightsizer.io/model-size="huge" is invalid' in result.stderr
    assert control_plane.kubectl("get", "pod", "bad", "-n", ON, check=False).returncode != 0


GPU_NODE_LABELS = {"nvidia.com/mig.capable": "true", "nvidia.com/mig.strategy": "mixed"}
GPU_TAINT = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def test_rewritten_pods_schedule_only_where_their_profile_is(control_plane, webhook):
    control_plane.make_fake_gpu_node(
        "h100-mig-a",
        labels={
            **GPU_NODE_LABELS,
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "nvidia.com/mig.config": "all-1g.20gb",
        },
        taints=GPU_TAINT,
        allocatable={"nvidia.com/mig-1g.20gb": "4"},
    )
    control_plane.make_fake_gpu_node(
        "a100-mig-a",  # has MIG slices, but of another product: the affinity keeps pods off
        labels={**GPU_NODE_LABELS, "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
        taints=GPU_TAINT,
        allocatable={"nvidia.com/mig-1g.20gb": "4", "nvidia.com/mig-7g.80gb": "1"},
    )
    control_plane.make_fake_gpu_node("cpu-a", labels={"node-role": "cpu"})
    for i in range(3):
        assert apply_pod(control_plane, ON, gpu_pod(f"sched-{i}")).returncode == 0
    too_big = gpu_pod("sched-7g", {A + "profile": "7g.80gb"})
    assert apply_pod(control_plane, ON, too_big).returncode == 0

    def bound():
        nodes = [control_plane.get_json("pod", f"sched-{i}", "-n", ON)["spec"].get("nodeName") for i in range(3)]
        return nodes if all(nodes) else None

    for node_name in wait_for(bound, timeout=60, message="the scheduler to bind the right-sized pods"):
        node = control_plane.get_json("node", node_name)
        assert node["status"]["allocatable"].get("nvidia.com/mig-1g.20gb"), node_name
        assert node["metadata"]["labels"].get("nvidia.com/gpu.product") == "NVIDIA-H100-80GB-HBM3"

    def failed_scheduling():
        events = control_plane.get_json(
            "events", "-n", ON, "--field-selector", "involvedObject.name=sched-7g,reason=FailedScheduling"
        )["items"]
        return events[0]["message"] if events else None

    message = wait_for(failed_scheduling, timeout=60, message="a FailedScheduling event for the 7g.80gb pod")
    assert "Insufficient nvidia.com/mig-7g.80gb" in message
    pending = control_plane.get_json("pod", "sched-7g", "-n", ON)
    assert pending["status"]["phase"] == "Pending" and not pending["spec"].get("nodeName")


def test_each_pod_create_calls_the_webhook_once(control_plane, webhook):
    """The Priority plugin runs again after our patch; since we write the class's own
    priority and preemptionPolicy, it changes nothing and reinvocation does not fire."""
    pod = gpu_pod("counted", {"e2e/marker": "count-me-once"})
    assert apply_pod(control_plane, ON, pod).returncode == 0

    def calls():
        return [
            line
            for line in webhook.log_text().splitlines()
            if '"name": "counted"' in line or '"name":"counted"' in line
        ]

    # Admission lines reach the log within logs.FLUSH_SECONDS: wait for the first, then
    # long enough for a second call's line to show if there were one.
    wait_for(calls, timeout=10, message="the admission line of the counted pod")
    time.sleep(10 * FLUSH_SECONDS)
    assert len(calls()) == 1, calls()


def test_with_the_webhook_stopped_failure_policy_fail_refuses_gpu_pods_only(control_plane, webhook):
    config = yaml.safe_load(WEBHOOK_CONFIG.read_text())
    assert config["webhooks"][0]["failurePolicy"] == "Fail"
    webhook.stop()
    refused = apply_pod(control_plane, ON, gpu_pod("while-down"))
    assert refused.returncode != 0
    assert 'failed calling webhook "pods.gpu-rightsizer.io"' in refused.stderr
    # matchConditions keep the API server from calling us for pods without a GPU ...
    cpu_pod = copy.deepcopy(gpu_pod("cpu-while-down"))
    del cpu_pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert apply_pod(control_plane, ON, cpu_pod).returncode == 0
    # ... and for pods that opt out; other namespaces are not affected at all.
    skipped = gpu_pod("skip-while-down", {A + "skip": "true"})
    assert apply_pod(control_plane, ON, skipped).returncode == 0
    assert apply_pod(control_plane, OFF, gpu_pod("off-while-down")).returncode == 0
