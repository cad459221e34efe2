"""CapacityAnswers (webhook/admission/capacity_answers.py) through admit(): what a create
reserves, and that a dry run (a preview) reserves nothing."""

from __future__ import annotations

import yaml

from tests.support.fixtures import gpu_pod, review_for
from webhook.admission.admit import admit
from webhook.admission.capacity_answers import CapacityAnswers
from webhook.core.capacity import build_view
from webhook.core.policy import compile_policy, default_policy_text

data = yaml.safe_load(default_policy_text())
data["capacity"] = {"mode": "prefer-free"}
POLICY = compile_policy(data)
PRODUCT = "NVIDIA-H100-80GB-HBM3"


def gpu_node(alloc: dict) -> dict:
    return {
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"nvidia.com/gpu.product": PRODUCT, "nvidia.com/mig.capable": "true"}},
        "spec": {},
        "status": {
            "allocatable": {k: str(v) for k, v in alloc.items()},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def profile_of(outcome) -> str:
    return outcome.decision.profile.name


def test_a_dry_run_reserves_no_slice_and_a_create_does():
    view = build_view([gpu_node({"nvidia.com/mig-1g.10gb": 1, "nvidia.com/mig-2g.20gb": 1})], [], 100.0)
    answers = CapacityAnswers(POLICY, lambda: view, clock=lambda: 101.0)
    pod = gpu_pod({"gpu-rightsizer.io/gpu-memory": "5Gi"})

    def create(dry_run: bool):
        return admit(review_for(pod, dry_run=dry_run), answers)

    previews = [create(True) for _ in range(3)]
    assert [profile_of(o) for o in previews] == ["1g.10gb"] * 3  # each preview sees the slice free
    assert answers.reservations == 0
    assert profile_of(create(False)) == "1g.10gb"
    assert answers.reservations == 1
    # the create holds the last 1g.10gb until the view shows its pod
    assert profile_of(create(True)) == "2g.20gb"
    assert profile_of(create(False)) == "2g.20gb"
    assert answers.reservations == 2
