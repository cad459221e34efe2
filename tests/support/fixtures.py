"""Test material: the real AdmissionReviews captured from kube-apiserver v1.36.3, the
default policy, and a validator for the Pod schema of a recent Kubernetes release."""

from __future__ import annotations

import copy
import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# ../shared beside the project root holds the material the fixtures were copied from;
# tests prefer it when it is there so that the copies cannot drift unnoticed.
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
K8S_SCHEMA_VERSION = "1.36.0"


def measurements_path(name: str = "h100-llm-memory.json") -> Path:
    """A file of ../shared/measurements/, or its copy in fixtures/ on a machine without it."""
    path = SHARED / "measurements" / name
    return path if path.exists() else FIXTURES / "measurements" / name


def mig_profile_table(name: str) -> str:
    """A `nvidia-smi mig -lgip/-lgipp` table read off a real GPU (../shared/mig-profiles,
    else its copy in tests/fixtures)."""
    path = SHARED / "mig-profiles" / name
    return (path if path.exists() else FIXTURES / "mig-profiles" / name).read_text()


def captured_review(name: str) -> dict:
    """The AdmissionReview body of a capture (``pod-create``, ``pod-create-dry-run``...)."""
    with open(FIXTURES / "admission-reviews" / f"{name}.json") as fh:
        return json.load(fh)["review"]


def captured_pod(name: str = "pod-create") -> dict:
    return copy.deepcopy(captured_review(name)["request"]["object"])


def review_for(pod: dict, *, operation: str = "CREATE", dry_run: bool = False, uid: str = "uid-1") -> dict:
    review = copy.deepcopy(captured_review("pod-create"))
    review["request"].update(object=pod, operation=operation, dryRun=dry_run, uid=uid)
    return review


def gpu_pod(annotations: dict | None = None, gpus: str = "1", **spec) -> dict:
    """A minimal pod as the API server would send it: requests defaulted from limits."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ml", "annotations": dict(annotations or {})},
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "image": "vllm/vllm-openai:v0.6.0",
                    "resources": {
                        "limits": {"cpu": "2", "nvidia.com/gpu": gpus},
                        "requests": {"cpu": "2", "nvidia.com/gpu": gpus},
                    },
                }
            ],
            **spec,
        },
    }


def validate_pod(pod: dict) -> None:
    """Raise if ``pod`` is not a valid v1 Pod for the schema of a recent release."""
    import kubernetes_validate

    kubernetes_validate.validate(pod, K8S_SCHEMA_VERSION, strict=True)
