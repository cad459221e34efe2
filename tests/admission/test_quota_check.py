"""The GPU-quota step of admit() (webhook/admission/quota_check.py): a rewrite that escapes
its namespace's nvidia.com/gpu quota is said (warn) or refused past the quota
(gpu-equivalent); nothing else changes."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from tests.support.fixtures import gpu_pod, review_for
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers
from webhook.admission.memo import DecisionMemo
from webhook.core.policy import compile_policy, default_policy_text
from webhook.core.quota import build_quota_view

SMALL = {"gpu-rightsizer.io/model-size": "3b"}  # 1g.10gb on the default H100 pool


def policy(mode: str, **changes):
    data = yaml.safe_load(default_policy_text())
    data["quota"] = {"mode": mode}
    data.update(changes)
    return compile_policy(data)


def review(namespace: str = "ml", annotations: dict | None = None, **spec) -> dict:
    r = review_for(gpu_pod(SMALL if annotations is None else annotations, **spec))
    r["request"]["namespace"] = namespace
    return r


def used_pods(namespace: str, n: int, profile: str = "1g.10gb") -> list[dict]:
    return [
        {
            "metadata": {"namespace": namespace, "name": f"u{i}"},
            "spec": {"containers": [{"resources": {"limits": {f"nvidia.com/mig-{profile}": "1"}}}]},
            "status": {"phase": "Running"},
        }
        for i in range(n)
    ]


GPU_QUOTA = {"metadata": {"name": "team-gpus", "namespace": "ml"}, "spec": {"hard": {"requests.nvidia.com/gpu": "1"}}}


def test_without_a_view_the_pod_is_told_its_quota_was_not_checked():
    outcome = admit(review(), PlainAnswers(policy("gpu-equivalent")), quota=None)
    assert outcome.result == "mutated"
    assert "GPU quota not checked" in outcome.response["warnings"][-1]


def test_off_never_reads_the_view():
    view = build_quota_view([GPU_QUOTA], used_pods("ml", 50))
    plain = admit(review(), PlainAnswers(policy("off")))
    assert admit(review(), PlainAnswers(policy("off")), quota=view).response == plain.response


def test_warn_adds_one_warning_and_keeps_the_patch():
    view = build_quota_view([GPU_QUOTA], [])
    plain = admit(review(), PlainAnswers(policy("off"))).response
    warned = admit(review(), PlainAnswers(policy("warn")), quota=view).response
    assert warned["allowed"] and warned["patch"] == plain["patch"]
    assert warned["warnings"][: len(plain["warnings"])] == plain["warnings"]
    (extra,) = warned["warnings"][len(plain["warnings"]) :]
    assert "ResourceQuota team-gpus caps requests.nvidia.com/gpu at 1 in ml" in extra
    assert "nvidia.com/mig-1g.10gb" in extra


def test_warn_says_nothing_in_a_namespace_without_a_gpu_quota():
    view = build_quota_view([GPU_QUOTA], [])
    plain = admit(review("other"), PlainAnswers(policy("off"))).response
    assert admit(review("other"), PlainAnswers(policy("warn")), quota=view).response == plain


def test_enforce_refuses_past_one_gpu_with_403_and_the_figures():
    answers = PlainAnswers(policy("gpu-equivalent"))
    ok = admit(review(), answers, quota=build_quota_view([GPU_QUOTA], used_pods("ml", 6))).response
    assert ok["allowed"] and "1 of 1 in use with this pod" in ok["warnings"][-1]
    refused = admit(review(), answers, quota=build_quota_view([GPU_QUOTA], used_pods("ml", 7)))
    assert refused.result == "denied"
    status = refused.response["status"]
    assert not refused.response["allowed"] and status["code"] == 403 and status["reason"] == "Forbidden"
    assert "in use 1 GPU (7 x 1g.10gb at 1/7 (0.14)), this pod adds 1/7 (0.14)" in status["message"]
    assert "patch" not in refused.response


def test_a_memo_keeps_the_pure_answer_and_the_quota_is_applied_per_request():
    memo = DecisionMemo(PlainAnswers(policy("gpu-equivalent")))
    body = json.dumps(review()).encode()
    free = build_quota_view([GPU_QUOTA], [])
    full = build_quota_view([GPU_QUOTA], used_pods("ml", 7))
    results = [admit(review(), memo, len(body), quota=q).result for q in (free, free, full, free)]
    assert results == ["mutated", "mutated", "denied", "mutated"]


@pytest.mark.parametrize("annotations", [{"gpu-rightsizer.io/skip": "true"}, {}])
def test_pods_that_are_not_rewritten_are_not_counted(annotations):
    view = build_quota_view([GPU_QUOTA], used_pods("ml", 7))
    outcome = admit(review(annotations=annotations), PlainAnswers(policy("gpu-equivalent")), quota=view)
    assert outcome.result != "denied"


def test_two_rewritten_containers_count_twice():
    pod = gpu_pod(SMALL)
    pod["spec"]["containers"].append(dict(pod["spec"]["containers"][0], name="second"))
    r = review_for(pod)
    r["request"]["namespace"] = "ml"
    outcome = admit(r, PlainAnswers(policy("gpu-equivalent")), quota=build_quota_view([GPU_QUOTA], used_pods("ml", 6)))
    assert (
        outcome.result == "denied"
        and "this pod adds 2/7 (0.29) (2 x nvidia.com/mig-1g.10gb" in (outcome.response["status"]["message"])
    )
    patch = json.loads(base64.b64decode(admit(r, PlainAnswers(policy("off"))).response["patch"]))
    assert sum("mig-1g.10gb" in json.dumps(op) for op in patch) >= 2
