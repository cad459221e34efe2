"""Helm for the tests: the helm binary (built once from the Go module proxy by
scripts/install-helm.sh), the chart rendered to objects, and the command lines that install
and uninstall it in a cluster (for the real-node tier).

    from chart_support import helm_binary, render, install_command, uninstall_command
    objects = render({"certificates": {"mode": "cert-manager"}})
    subprocess.run(install_command(values, kubeconfig=kc, image="reg/gpu-rightsizer:dev"), check=True)
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gpu-rightsizer"
RELEASE = "gpu-rightsizer"
NAMESPACE = "gpu-rightsizer-system"
KUBE_VERSION = "1.36.0"


class RenderError(RuntimeError):
    """helm refused the values; the message is helm's stderr."""


@functools.cache
def helm_binary() -> str:
    """Path of the helm binary: scripts/install-helm.sh's build (cached under
    ${GPU_RIGHTSIZER_CACHE:-~/.cache/gpu-rightsizer}), else a helm on PATH."""
    if shutil.which("go"):
        done = subprocess.run([str(ROOT / "scripts" / "install-helm.sh")], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/install-helm.sh failed:\n{done.stderr[-3000:]}")
        return done.stdout.strip().splitlines()[-1]
    found = shutil.which("helm")
    if not found:
        raise RuntimeError("neither go (to build helm: scripts/install-helm.sh) nor helm is on PATH")
    return found


def values_file(values: dict | None, directory: str | Path) -> Path:
    """``values`` written as a values file (JSON, which is YAML) in ``directory``."""
    path = Path(directory) / "values.json"
    path.write_text(json.dumps(values or {}))
    return path


def template_command(
    values_path: Path, *, release: str = RELEASE, namespace: str = NAMESPACE, kube_version: str = KUBE_VERSION
) -> list[str]:
    return [
        helm_binary(),
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
        "-f",
        str(values_path),
    ]


def render_text(
    values: dict | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE, kube_version: str = KUBE_VERSION
) -> str:
    """`helm template` of the chart with ``values`` (merged over values.yaml, as -f does);
    raises RenderError with helm's message when the values are refused."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = template_command(
            values_file(values, tmp), release=release, namespace=namespace, kube_version=kube_version
        )
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RenderError(done.stderr.strip())
    return done.stdout


def render(
    values: dict | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE, kube_version: str = KUBE_VERSION
) -> list[dict]:
    """The objects the chart installs with ``values``, in the order helm prints them."""
    text = render_text(values, release=release, namespace=namespace, kube_version=kube_version)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def image_values(image: str) -> dict:
    """The values that make every container run ``image`` (REGISTRY/NAME:TAG or NAME@sha256:...)."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return {"image": {"repository": repository, "digest": digest}}
    repository, _, tag = image.rpartition(":")
    if "/" in tag or not repository:  # a registry port, no tag
        return {"image": {"repository": image}}
    return {"image": {"repository": repository, "tag": tag}}


def install_command(
    values: dict | None = None,
    *,
    kubeconfig: str | Path | None = None,
    image: str | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    values_dir: str | Path | None = None,
    upgrade: bool = False,
    timeout: str = "5m",
) -> list[str]:
    """The `helm install` (or, with upgrade, `helm upgrade --install`) command line for a cluster:
    into ``namespace`` (created when missing), waiting until the webhook's pods are ready and
    the certs Job has finished (--wait --wait-for-jobs: in job mode the Job writes the Secret
    the pods mount, and Helm creates it with the rest, not as a hook, so this cannot
    deadlock). ``values`` go to a values file in ``values_dir`` (a fresh temporary folder
    when None, left for the command to read); ``image`` overrides image.*."""
    merged = dict(values or {})
    if image:
        merged = {**merged, **image_values(image)}
    directory = Path(values_dir) if values_dir else Path(tempfile.mkdtemp(prefix="gpu-rightsizer-helm-"))
    cmd = [
        helm_binary(),
        *(["upgrade", "--install"] if upgrade else ["install"]),
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--wait",
        "--wait-for-jobs",
        "--timeout",
        timeout,
        "-f",
        str(values_file(merged, directory)),
    ]
    if kubeconfig:
        cmd += ["--kubeconfig", str(kubeconfig)]
    return cmd


def uninstall_command(
    *, kubeconfig: str | Path | None = None, release: str = RELEASE, namespace: str = NAMESPACE, timeout: str = "2m"
) -> list[str]:
    """`helm uninstall`, waiting until every object of the release is gone (the webhook
    configuration included). The namespace and, in job mode, the <fullname>-tls Secret the
    Job made stay (neither can refuse a pod)."""
    cmd = [helm_binary(), "uninstall", release, "--namespace", namespace, "--wait", "--timeout", timeout]
    if kubeconfig:
        cmd += ["--kubeconfig", str(kubeconfig)]
    return cmd
