"""gpu-rightsizer installed the way users install it, on a node that runs pods.

The tests run in file order and build on each other, like a user's session: install the
self-signed overlay with the one image override README.md tells them to make, check Pod
Security, preview through the in-cluster webhook, keep pod creates flowing while the webhook
restarts, reloads its policy and rotates its certificate, run GPU pods on the slices the fake
device plugin advertises, then uninstall. Every figure a test measures is printed (run with
`-s` to see them) and README's install section quotes them.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from controlplane import wait_for
from cryptography import x509
from install import NS, install, policy_text, set_policy
from load import CreateLoad

REPO = Path(__file__).resolve().parents[2]
TEAM = "ml-team"
ANNOTATION = "gpu-rightsizer.io/"
LOAD_RATE = 20  # creates per second; the 2-core machine also runs the cluster and the webhook


# --------------------------------------------------------------------------- helpers


def gpu_pod(name: str, model_size: str = "3b", **annotations: str) -> dict:
    """A pod as an ML engineer writes it: one whole GPU and the model's size. It prints the
    devices the device plugin gave it, then waits."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {
                f"{ANNOTATION}model-size": model_size,
                **{ANNOTATION + k: v for k, v in annotations.items()},
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "IMAGE",
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "python3",
                        "-c",
                        "import os, time; print('NVIDIA_VISIBLE_DEVICES=' + "
                        "os.environ.get('NVIDIA_VISIBLE_DEVICES', ''), flush=True); time.sleep(3600)",
                    ],
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        },
    }


def with_image(obj: dict, image: str) -> dict:
    obj = json.loads(json.dumps(obj))
    spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    for c in spec["containers"]:
        c["image"] = image
    return obj


def pods_of(plane, namespace: str, selector: str | None = None) -> list[dict]:
    args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
    return plane.get_json(*args)["items"]


def webhook_pods(plane) -> list[dict]:
    """The webhook's pods that are not on their way out."""
    return [
        p
        for p in pods_of(plane, NS, "app.kubernetes.io/component=webhook")
        if not p["metadata"].get("deletionTimestamp")
    ]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def served_certificate(ip: str, port: int = 8443) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((ip, port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def pod_logs(plane, namespace: str, name: str) -> str:
    return plane.kubectl("logs", "-n", namespace, name).stdout


def load_pod(image: str) -> dict:
    return with_image(gpu_pod("load"), image)


def report(what: str, load: CreateLoad, seconds: float | None = None) -> str:
    line = f"{what}: {load.count()} dry-run creates at {load.achieved_rate():.1f}/s, {len(load.refused)} refused"
    if seconds is not None:
        line += f"; {seconds:.1f}s"
    print(line)
    return line


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def installed(node, tmp_path_factory):
    """Case 1: the self-signed overlay, applied as README says, with one image override."""
    plane = node.plane
    overlay, took = install(plane, node.image.name, "overlays/self-signed", tmp_path_factory.mktemp("install"))
    print(f"install: certs Job complete and 2 replicas Ready {took:.0f}s after kubectl apply -k")
    plane.kubectl("create", "namespace", TEAM)
    plane.kubectl("label", "namespace", TEAM, "gpu-rightsizer.io/enabled=true")
    plane.wait_for_service_account(TEAM)
    return {"overlay": overlay, "image": node.image.name}


# --------------------------------------------------------------------------- cases


def test_install_certs_job_secret_ca_bundle_and_replicas(node, installed):
    plane = node.plane
    job = plane.get_json("job", "gpu-rightsizer-certs", "-n", NS)
    assert job["status"].get("succeeded") == 1
    secret = plane.get_json("secret", "gpu-rightsizer-tls", "-n", NS)
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) >= {"tls.crt", "tls.key", "ca.crt"}
    config = plane.get_json("mutatingwebhookconfiguration", "gpu-rightsizer")
    bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
    assert base64.b64decode(secret["data"]["ca.crt"]).strip() in bundle
    deployment = plane.get_json("deployment", "gpu-rightsizer", "-n", NS)
    assert deployment["status"].get("readyReplicas") == 2
    images = {c["image"] for p in pods_of(plane, NS) for c in p["spec"]["containers"]}
    assert images == {installed["image"]}, images
    assert all(p["spec"]["nodeName"] == "gpu-node-1" for p in webhook_pods(plane))


def test_pod_security_restricted_admits_our_pods_and_refuses_others(node, installed):
    """Case 8: the namespace enforces `restricted`; the Job's and the webhook's pods were
    admitted under it by the real API server and ran; a pod that is not restricted is refused."""
    plane = node.plane
    labels = plane.get_json("namespace", NS)["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    phases = {p["metadata"]["name"]: p["status"]["phase"] for p in pods_of(plane, NS)}
    assert sorted(phases.values()) == ["Running", "Running", "Succeeded"], phases
    # A plain pod (no securityContext) is `baseline` but not `restricted`.
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "not-restricted", "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": installed["image"]}]},
    }
    refused = plane.kubectl("apply", "-f", "-", input=json.dumps(plain), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr


def test_dry_run_server_goes_through_the_in_cluster_webhook(node, installed):
    """Case 3: `kubectl apply --dry-run=server -o yaml` shows the rewrite; nothing is stored."""
    plane = node.plane
    pod = with_image(gpu_pod("preview"), installed["image"])
    out = plane.kubectl("apply", "-n", TEAM, "--dry-run=server", "-o", "yaml", "-f", "-", input=json.dumps(pod))
    shown = yaml.safe_load(out.stdout)
    limits = shown["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/mig-1g.10gb": "1"}, limits
    assert shown["metadata"]["annotations"][f"{ANNOTATION}assigned-profile"] == "1g.10gb"
    kubernetes_validate.validate(shown, "1.36.0", strict=True)
    assert plane.kubectl("get", "pod", "preview", "-n", TEAM, check=False).returncode != 0


def test_rollout_restart_under_steady_creates(node, installed):
    """Case 4a: `kubectl rollout restart` of the webhook while creates flow: none refused."""
    plane = node.plane
    with CreateLoad.against(plane, TEAM, load_pod(installed["image"]), rate=LOAD_RATE, max_seconds=300) as load:
        time.sleep(3)
        started = time.monotonic()
        plane.kubectl("rollout", "restart", "-n", NS, "deployment/gpu-rightsizer")
        plane.kubectl("rollout", "status", "-n", NS, "deployment/gpu-rightsizer", "--timeout=240s", timeout=260)
        took = time.monotonic() - started
        time.sleep(3)
    report("rollout restart", load, took)
    assert load.count() >= LOAD_RATE * took * 0.5, "the load did not keep its rate"
    assert load.refused == [], load.refused[:5]


def test_deleting_a_webhook_pod_under_steady_creates(node, installed):
    """Case 4b: one webhook pod deleted (as a node drain or an eviction would) while creates
    flow: none refused, and the Deployment is back to 2 Ready replicas."""
    plane = node.plane
    victim = webhook_pods(plane)[0]["metadata"]["name"]
    with CreateLoad.against(plane, TEAM, load_pod(installed["image"]), rate=LOAD_RATE, max_seconds=300) as load:
        time.sleep(3)
        started = time.monotonic()
        plane.kubectl("delete", "pod", "-n", NS, victim, "--wait=true", timeout=120)
        wait_for(
            lambda: (
                sum(ready(p) for p in webhook_pods(plane)) == 2
                and victim not in {p["metadata"]["name"] for p in webhook_pods(plane)}
            ),
            180,
            interval=1,
            message="2 Ready webhook pods again",
        )
        took = time.monotonic() - started
        time.sleep(3)
    report("delete one webhook pod", load, took)
    assert load.refused == [], load.refused[:5]


def test_policy_change_is_followed_without_a_failed_admission(node, installed):
    """Case 5: edit the policy ConfigMap; the kubelet updates the projected volume and each
    server reloads it. Measures the seconds until every admission follows the new policy."""
    plane = node.plane
    policy = policy_text(plane)
    assert "overheadFactor: 1.2" in policy
    # 3b fp16 = 6 GB of weights: x1.2 fits 1g.10gb, x2.0 (12 GB) needs a 20 GB slice.
    changed = policy.replace("overheadFactor: 1.2", "overheadFactor: 2.0")
    with CreateLoad.against(plane, TEAM, load_pod(installed["image"]), rate=LOAD_RATE, max_seconds=300) as load:
        time.sleep(3)
        assert {o.profile for o in load.admitted} == {"1g.10gb"}
        edited = time.monotonic()
        set_policy(plane, changed)

        def all_new() -> bool:
            recent = [o for o in load.admitted if o.at > time.monotonic() - 2]
            return len(recent) >= LOAD_RATE and all(o.profile != "1g.10gb" for o in recent)

        wait_for(all_new, 200, interval=0.5, message="every admission to follow the edited policy")
        first_new = min(o.at for o in load.admitted if o.profile != "1g.10gb") - edited
        all_followed = max(o.at for o in load.admitted if o.profile == "1g.10gb") - edited
    report("policy ConfigMap edit", load)
    print(
        f"policy change: first admission under the new policy {first_new:.1f}s after the edit, "
        f"every admission {all_followed:.1f}s after it"
    )
    assert load.refused == [], load.refused[:5]
    set_policy(plane, policy)
    wait_for(
        lambda: (
            plane.kubectl(
                "apply",
                "-n",
                TEAM,
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                "-",
                input=json.dumps(load_pod(installed["image"])),
            ).stdout.count('"1g.10gb"')
            >= 1
        ),
        200,
        interval=2,
        message="the original policy back",
    )


def test_certificate_rotation_with_certs_install(node, installed, tmp_path):
    """Case 6: `gpu-rightsizer certs generate --force` + `certs install`: a new CA, the old one
    kept in the caBundle until the new certificate is served; the pods serve the new one after
    the kubelet's update, and no create is refused meanwhile."""
    plane = node.plane
    old_ca = base64.b64decode(plane.get_json("secret", "gpu-rightsizer-tls", "-n", NS)["data"]["ca.crt"])
    cli = (
        [str(REPO / ".venv" / "bin" / "gpu-rightsizer")]
        if (REPO / ".venv" / "bin" / "gpu-rightsizer").exists()
        else ["gpu-rightsizer"]
    )
    subprocess.run(
        [*cli, "certs", "generate", "--force", "--out", str(tmp_path)], check=True, capture_output=True, timeout=60
    )
    new_ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    with CreateLoad.against(plane, TEAM, load_pod(installed["image"]), rate=LOAD_RATE, max_seconds=300) as load:
        time.sleep(3)
        started = time.monotonic()
        done = subprocess.run(
            [*cli, "certs", "install", "--kubeconfig", str(plane.kubeconfig), "--cert-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        bundle = base64.b64decode(
            plane.get_json("mutatingwebhookconfiguration", "gpu-rightsizer")["webhooks"][0]["clientConfig"]["caBundle"]
        )
        assert old_ca.strip() in bundle and (tmp_path / "ca.crt").read_bytes().strip() in bundle

        def serving_new() -> bool:
            ips = [p["status"]["podIP"] for p in webhook_pods(plane)]
            return len(ips) == 2 and all(served_certificate(ip).issuer == new_ca.subject for ip in ips)

        wait_for(serving_new, 200, interval=1, message="both pods to serve the new certificate")
        took = time.monotonic() - started
        time.sleep(3)
    report("certificate rotation", load, took)
    assert load.refused == [], load.refused[:5]


def test_gpu_pods_run_on_the_slices_the_plugin_advertises(node, installed):
    """Case 2: a Pod, a Deployment's pod and a Job's pod, each asking for a whole GPU, are
    rewritten through the Service, scheduled onto the node and run; each container sees the
    MIG device the plugin allocated it. The fourth 1g.10gb pod stays Pending with the
    scheduler's reason; a larger model runs on the 3g.40gb slice."""
    plane = node.plane
    # GPU nodes carry this taint in most clusters; the policy's toleration lets the rewritten
    # pods on. (The webhook itself runs on CPU nodes in a real cluster; this one-node cluster
    # installed it before tainting.)
    plane.kubectl("taint", "node", "gpu-node-1", "nvidia.com/gpu=present:NoSchedule", "--overwrite")
    image = installed["image"]
    template = with_image(gpu_pod("x"), image)
    pod = with_image(gpu_pod("single"), image)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "server"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "server"}},
            "template": {
                "metadata": {"labels": {"app": "server"}, "annotations": template["metadata"]["annotations"]},
                "spec": template["spec"] | {"restartPolicy": "Always"},
            },
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "finetune"},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": template["metadata"]["annotations"]}, "spec": template["spec"]},
        },
    }
    big = with_image(gpu_pod("big", model_size="13b"), image)
    for obj in (pod, deployment, job, big):
        plane.kubectl("apply", "-n", TEAM, "-f", "-", input=json.dumps(obj))

    def running() -> list[dict]:
        pods = pods_of(plane, TEAM)
        return pods if len(pods) == 4 and all(p["status"]["phase"] == "Running" for p in pods) else []

    try:
        pods = wait_for(running, 180, interval=1, message="4 GPU pods Running")
    except TimeoutError:
        print(plane.kubectl("get", "pods,events", "-n", TEAM, "-o", "wide", check=False).stdout)
        raise
    seen = {}
    for p in pods:
        kubernetes_validate.validate(p, "1.36.0", strict=True)
        limits = p["spec"]["containers"][0]["resources"]["limits"]
        profile = p["metadata"]["annotations"][f"{ANNOTATION}assigned-profile"]
        assert limits == {f"nvidia.com/mig-{profile}": "1"}, limits
        assert p["spec"]["priorityClassName"] == "gpu-rightsizer-inference"
        line = wait_for(
            lambda: [
                x
                for x in pod_logs(plane, TEAM, p["metadata"]["name"]).splitlines()
                if x.startswith("NVIDIA_VISIBLE_DEVICES=")
            ],
            60,
            message="the pod's log",
        )
        seen[p["metadata"]["name"]] = (profile, line[0].split("=", 1)[1])
    profiles = sorted(profile for profile, _ in seen.values())
    assert profiles == ["1g.10gb", "1g.10gb", "1g.10gb", "3g.40gb"], seen
    devices = [device for _, device in seen.values()]
    assert all(d.startswith("MIG-") for d in devices) and len(set(devices)) == 4, seen
    assert set(devices) <= set(node.node.allocated_device_ids()), (devices, node.node.allocated_device_ids())

    extra = with_image(gpu_pod("one-too-many"), image)
    plane.kubectl("apply", "-n", TEAM, "-f", "-", input=json.dumps(extra))

    def failed_scheduling() -> str:
        events = plane.get_json(
            "events", "-n", TEAM, "--field-selector", "involvedObject.name=one-too-many,reason=FailedScheduling"
        )["items"]
        return events[0]["message"] if events else ""

    message = wait_for(failed_scheduling, 60, interval=1, message="FailedScheduling for the 4th 1g.10gb pod")
    assert "Insufficient nvidia.com/mig-1g.10gb" in message, message
    assert plane.get_json("pod", "one-too-many", "-n", TEAM)["status"]["phase"] == "Pending"
    print(
        f"GPU pods: 3 x 1g.10gb + 1 x 3g.40gb Running with devices {sorted(devices)}; "
        f"the next 1g.10gb pod Pending: {message}"
    )


def test_a_gpu_pod_in_an_unlabelled_namespace_runs_untouched(node, installed):
    plane = node.plane
    plane.create_namespace("other-team")
    pod = with_image(gpu_pod("whole"), installed["image"])
    pod["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    plane.kubectl("apply", "-n", "other-team", "-f", "-", input=json.dumps(pod))
    stored = wait_for(
        lambda: (p := plane.get_json("pod", "whole", "-n", "other-team"))["status"]["phase"] == "Running" and p,
        120,
        interval=1,
        message="the untouched pod Running",
    )
    assert stored["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert not any(
        k.startswith(ANNOTATION + "assigned") or k.startswith(ANNOTATION + "decision")
        for k in stored["metadata"]["annotations"]
    )


def test_uninstall_leaves_nothing_that_refuses_pods(node, installed):
    """Case 7: `kubectl delete -k` removes the webhook configuration with the rest; GPU pods
    in the labelled namespace are then created untouched (a configuration left behind with
    failurePolicy Fail and no server would refuse them)."""
    plane = node.plane
    plane.kubectl("delete", "-k", str(installed["overlay"]), "--wait=true", timeout=240)
    assert plane.kubectl("get", "mutatingwebhookconfiguration", "gpu-rightsizer", check=False).returncode != 0
    assert plane.kubectl("get", "namespace", NS, check=False).returncode != 0
    pod = with_image(gpu_pod("after-uninstall"), installed["image"])
    out = plane.kubectl("apply", "-n", TEAM, "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod))
    stored = json.loads(out.stdout)
    assert stored["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert f"{ANNOTATION}assigned-profile" not in stored["metadata"]["annotations"]
