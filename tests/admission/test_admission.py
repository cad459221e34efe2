"""admit(): golden AdmissionReview request/response pairs (captured from a real
kube-apiserver, plus variants), and the invariants every answer keeps."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import jsonpatch
import pytest

from tests.support.fixtures import FIXTURES, captured_review, review_for, validate_pod
from tests.support.golden import readable
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers

GOLDEN = FIXTURES / "golden"
REQUESTS = sorted(GOLDEN.glob("*.request.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def patch_of(response: dict) -> list:
    return json.loads(base64.b64decode(response["patch"])) if "patch" in response else []


@pytest.mark.parametrize("request_file", REQUESTS, ids=lambda p: p.name.split(".")[0])
def test_golden_response(policy, request_file):
    expected = load(request_file.with_name(request_file.name.replace(".request.", ".response.")))
    assert readable(admit(load(request_file), PlainAnswers(policy)).response) == expected


@pytest.mark.parametrize("request_file", REQUESTS, ids=lambda p: p.name.split(".")[0])
def test_every_answer_applies_validates_and_is_idempotent(policy, request_file):
    review = load(request_file)
    response = admit(review, PlainAnswers(policy)).response
    assert response["uid"] == review["request"]["uid"]
    if not response["allowed"]:
        assert response["status"]["code"] == 400 and response["status"]["message"]
        return
    pod = review["request"]["object"]
    if review["request"]["kind"]["kind"] != "Pod" or review["request"]["operation"] != "CREATE":
        assert "patch" not in response
        return
    mutated = jsonpatch.apply_patch(pod, patch_of(response))
    validate_pod(mutated)
    again = admit(review_for(mutated, uid="again"), PlainAnswers(policy)).response
    assert "patch" not in again, "a second pass over the mutated pod must change nothing"


def test_dry_run_gets_the_same_answer(policy):
    review = captured_review("pod-create-dry-run")
    assert review["request"]["dryRun"] is True
    dry = admit(review, PlainAnswers(policy)).response
    review["request"]["dryRun"] = False
    normal = admit(review, PlainAnswers(policy)).response
    assert patch_of(dry) == patch_of(normal)
    assert dry["warnings"] == normal["warnings"]


def test_the_patch_escapes_slashes_per_rfc6901(policy):
    paths = [op["path"] for op in patch_of(admit(captured_review("pod-create"), PlainAnswers(policy)).response)]
    assert "/spec/containers/0/resources/limits/nvidia.com~1gpu" in paths
    assert "/spec/containers/0/resources/limits/nvidia.com~1mig-1g.20gb" in paths


def test_a_mutated_pod_gets_the_priority_of_its_class_so_one_call_is_enough(policy):
    response = admit(captured_review("pod-create"), PlainAnswers(policy)).response
    mutated = jsonpatch.apply_patch(captured_review("pod-create")["request"]["object"], patch_of(response))
    assert mutated["spec"]["priorityClassName"] == "gpu-rightsizer-inference"
    assert mutated["spec"]["priority"] == 100000
    assert mutated["spec"]["preemptionPolicy"] == "PreemptLowerPriority"


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
def test_other_operations_are_admitted_silently(policy, operation):
    review = review_for(captured_review("pod-create")["request"]["object"], operation=operation)
    assert admit(review, PlainAnswers(policy)).response == {"uid": "uid-1", "allowed": True}


def test_a_subresource_is_not_a_pod_create(policy):
    review = copy.deepcopy(captured_review("pod-create"))
    review["request"]["subResource"] = "binding"
    assert admit(review, PlainAnswers(policy)).response == {"uid": review["request"]["uid"], "allowed": True}


def test_a_malformed_pod_is_refused_naming_the_field(policy):
    pod = captured_review("pod-create")["request"]["object"]
    pod["spec"]["containers"] = "oops"
    response = admit(review_for(pod), PlainAnswers(policy)).response
    assert response["allowed"] is False
    assert response["status"]["message"] == "gpu-rightsizer: the pod is malformed: spec.containers: must be a list"


def test_input_review_is_not_modified(policy):
    review = captured_review("pod-create")
    before = copy.deepcopy(review)
    admit(review, PlainAnswers(policy))
    assert review == before


def test_warnings_are_single_lines_the_api_server_keeps_whole(policy):
    pod = captured_review("pod-create")["request"]["object"]
    pod["spec"]["containers"][0]["name"] = "n" * 63
    pod["spec"]["initContainers"] = [
        {"name": f"init-{i}", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}} for i in range(20)
    ]
    response = admit(review_for(pod), PlainAnswers(policy)).response
    assert all(len(w) <= 250 and "\n" not in w for w in response["warnings"])
