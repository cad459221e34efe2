"""The decision memo answers exactly what deciding would have answered.

The memo's key leaves out a pod's per-pod fields (webhook/admission/memo.py). Two things make that
safe, and both are held here over generated and mangled pods: the answer does not change
when those fields do, and the memo's answer is always the answer computed afresh.
"""

from __future__ import annotations

import copy
import threading

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_properties import json_values, mangled_reviews
from test_properties import POLICIES, pods

from tests.support.fixtures import captured_review, gpu_pod
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers, answer_pod
from webhook.admission.memo import DecisionMemo, pod_key
from webhook.core.policy import compile_policy, default_policy
from webhook.serving.holder import PolicyHolder

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERVICE_ACCOUNT_VOLUME = {
    "name": "kube-api-access-abcde",
    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
}


def _answer_tuple(answer):
    return answer.result, answer.decision, answer.patch, answer.response_fields


def _as_another_replica(pod: dict, values) -> dict:
    """``pod`` as a sibling replica would come: every per-pod field set to something else."""
    other = copy.deepcopy(pod)
    metadata = other.setdefault("metadata", {})
    for name, value in zip(("name", "uid", "creationTimestamp", "managedFields", "resourceVersion"), values):
        metadata[name] = value
    spec = other.setdefault("spec", {})
    spec["volumes"] = values[5]
    for field in ("containers", "initContainers"):
        for container in spec.get(field) or []:
            container["volumeMounts"] = values[6]
    return other


replica_values = st.lists(json_values, min_size=7, max_size=7)


@SETTINGS
@given(pod=pods(), which=st.sampled_from(range(len(POLICIES))), values=replica_values)
def test_per_pod_fields_change_neither_the_answer_nor_the_key(pod, which, values):
    sibling = _as_another_replica(pod, values)
    policy = POLICIES[which]
    assert _answer_tuple(answer_pod(sibling, policy)) == _answer_tuple(answer_pod(pod, policy))
    assert pod_key(sibling) == pod_key(pod)


@SETTINGS
@given(pod=pods(), which=st.sampled_from(range(len(POLICIES))), values=st.lists(replica_values, min_size=3, max_size=3))
def test_the_memo_answers_what_deciding_answers(pod, which, values):
    policy = POLICIES[which]
    memo = DecisionMemo(PlainAnswers(policy))
    seen = []
    for replica_values_ in values:
        sibling = _as_another_replica(pod, replica_values_)
        answer, how = memo.answer(sibling, len(orjson.dumps(sibling)))
        seen.append(how)
        assert _answer_tuple(answer) == _answer_tuple(answer_pod(sibling, policy))
    # Kept from the second sighting on: the third replica is answered from memory.
    assert seen == ["miss", "miss", "hit"]


@st.composite
def near_pods(draw):
    """A pod and variants of it that each take one part from another generated pod:
    pods a key that left out a decision input would confuse."""
    base = draw(pods())
    # Mostly a pod the webhook rewrites, so that the parts swapped in reach the mutation.
    if draw(st.integers(0, 3)):
        base["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
        base["metadata"].setdefault("annotations", {})["gpu-rightsizer.io/model-size"] = draw(
            st.sampled_from(["1b", "7b", "13b", "30b"])
        )
    out = [base]
    for _ in range(draw(st.integers(2, 5))):
        donor = draw(pods())
        variant = copy.deepcopy(base)
        part = draw(
            st.sampled_from(
                [
                    "annotations",
                    "containers",
                    "initContainers",
                    "affinity",
                    "tolerations",
                    "nodeSelector",
                    "priorityClassName",
                    "priority",
                    "preemptionPolicy",
                ]
            )
        )
        home, source = ("metadata", donor["metadata"]) if part == "annotations" else ("spec", donor["spec"])
        if part in source:
            variant[home][part] = source[part]
        else:
            variant[home].pop(part, None)
        out.append(variant)
    return out


@SETTINGS
@given(variants=near_pods(), which=st.sampled_from(range(len(POLICIES))), order=st.randoms(use_true_random=False))
def test_one_memo_tells_near_pods_apart(variants, which, order):
    policy = POLICIES[which]
    memo = DecisionMemo(PlainAnswers(policy))
    calls = variants * 3
    order.shuffle(calls)
    for pod in calls:
        answer, _how = memo.answer(pod, 100)
        assert _answer_tuple(answer) == _answer_tuple(answer_pod(pod, policy))


@settings(SETTINGS, max_examples=300)
@given(review=mangled_reviews())
def test_the_memo_answers_mangled_pods_as_deciding_does(review):
    if not isinstance(review, dict) or not isinstance(review.get("request"), dict):
        return
    pod = review["request"].get("object")
    memo = DecisionMemo(PlainAnswers(default_policy()))
    for _ in range(3):
        answer, _how = memo.answer(pod, 4096)
        assert _answer_tuple(answer) == _answer_tuple(answer_pod(pod, default_policy()))


def test_a_different_decision_input_is_a_different_key():
    base = gpu_pod({"gpu-rightsizer.io/model-size": "7b"})
    changes = [
        lambda p: p["metadata"]["annotations"].update({"gpu-rightsizer.io/model-size": "13b"}),
        lambda p: p["metadata"]["annotations"].update({"gpu-rightsizer.io/precision": "int8"}),
        lambda p: p["spec"]["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": "2"}),
        lambda p: p["spec"]["containers"][0].update({"name": "other"}),
        lambda p: p["spec"].update({"tolerations": [{"key": "k", "operator": "Exists"}]}),
        lambda p: p["spec"].update({"priorityClassName": "high"}),
        lambda p: p["spec"].update({"nodeSelector": {"zone": "a"}}),
        lambda p: p["metadata"].update({"namespace": "other"}),
        lambda p: p["metadata"].update({"labels": {"app": "other"}}),
    ]
    keys = {pod_key(base)}
    for change in changes:
        pod = copy.deepcopy(base)
        change(pod)
        keys.add(pod_key(pod))
    assert len(keys) == len(changes) + 1


def test_replicas_of_a_captured_deployment_pod_share_an_answer():
    # The API server's own request for a ReplicaSet's pod, and a sibling as the
    # ServiceAccount plugin would name it: another token volume, another uid.
    review = captured_review("deployment-pod-create")
    pod = review["request"]["object"]
    sibling = copy.deepcopy(pod)
    sibling["metadata"]["managedFields"] = []
    for volume in sibling["spec"].get("volumes", []):
        volume["name"] = volume["name"][:-5] + "zzzzz"
    for c in sibling["spec"]["containers"]:
        for mount in c.get("volumeMounts", []):
            mount["name"] = mount["name"][:-5] + "zzzzz"
    assert sibling != pod
    memo = DecisionMemo(PlainAnswers(default_policy()))
    body = len(orjson.dumps(review))
    hows = [memo.answer(p, body)[1] for p in (pod, sibling, pod, sibling)]
    assert hows == ["miss", "miss", "hit", "hit"]
    outcome = admit(review, memo, body)
    assert outcome.memo == "hit"
    assert outcome.response == admit(review, PlainAnswers(default_policy())).response
    assert outcome.result == "mutated"


def test_the_uid_is_the_requests_own_on_a_hit():
    review = captured_review("pod-create")
    memo = DecisionMemo(PlainAnswers(default_policy()))
    for i in range(3):
        review["request"]["uid"] = f"uid-{i}"
        outcome = admit(review, memo, 4096)
        assert outcome.response["uid"] == f"uid-{i}"
        assert list(outcome.response)[0] == "uid"
    assert outcome.memo == "hit"


def test_large_pods_and_non_objects_are_decided_without_the_memo():
    memo = DecisionMemo(PlainAnswers(default_policy()), max_pod_bytes=1000)
    pod = gpu_pod({"gpu-rightsizer.io/model-size": "7b"})
    for _ in range(3):
        answer, how = memo.answer(pod, 1001)
        assert how == "skipped" and answer.result == "mutated"
    for obj in (None, [], "pod", 3):
        answer, how = memo.answer(obj, 10)
        assert how == "skipped" and answer.result == "denied"
    assert len(memo) == 0


def test_a_pod_too_deep_to_key_is_still_answered():
    pod = gpu_pod({"gpu-rightsizer.io/model-size": "7b"})
    deep: object = "x"
    for _ in range(400):  # orjson writes at most 254 levels; it reads 1024
        deep = [deep]
    pod["metadata"]["labels"] = {"deep": "x"}
    pod["spec"]["containers"][0]["env"] = [{"name": "E", "value": "v", "deep": deep}]
    assert pod_key(pod) is None
    answer, how = DecisionMemo(PlainAnswers(default_policy())).answer(pod, 100)
    assert how == "skipped"
    assert _answer_tuple(answer) == _answer_tuple(answer_pod(pod, default_policy()))


def test_malformed_pods_are_remembered_as_their_denial():
    pod = gpu_pod({"gpu-rightsizer.io/model-size": "7b"})
    pod["spec"]["containers"] = "not a list"
    memo = DecisionMemo(PlainAnswers(default_policy()))
    hows = [memo.answer(pod, 100) for _ in range(3)]
    assert [h for _, h in hows] == ["miss", "miss", "hit"]
    assert all(a.result == "denied" for a, _ in hows)
    assert hows[2][0].response_fields == answer_pod(pod, default_policy()).response_fields


def test_the_memo_is_bounded_and_drops_the_oldest_first():
    memo = DecisionMemo(PlainAnswers(default_policy()), max_entries=4)
    pods_ = [gpu_pod({"gpu-rightsizer.io/model-size": f"{i + 1}b"}) for i in range(6)]
    for pod in pods_:
        memo.answer(pod, 100)
        memo.answer(pod, 100)  # the second sighting keeps it
    assert len(memo) == 4
    assert memo.answer(pods_[0], 100)[1] == "miss"  # the oldest went first
    assert memo.answer(pods_[5], 100)[1] == "hit"


def test_the_kept_keys_are_bounded_in_bytes_too():
    pods_ = [gpu_pod({"gpu-rightsizer.io/model-size": f"{i + 1}b"}) for i in range(6)]
    key_size = max(len(pod_key(pod)) for pod in pods_)
    memo = DecisionMemo(PlainAnswers(default_policy()), max_entries=100, max_key_bytes=3 * key_size)
    for pod in pods_:
        memo.answer(pod, 100)
        memo.answer(pod, 100)
    assert len(memo) == 3  # the entry count allows 100: the bytes bound kept three
    assert [memo.answer(pod, 100)[1] for pod in pods_[3:]] == ["hit"] * 3
    assert memo.answer(pods_[2], 100)[1] == "miss"  # the oldest went first


def test_a_pod_key_larger_than_the_bytes_bound_is_not_kept_nor_evicts_the_others():
    small = [gpu_pod({"gpu-rightsizer.io/model-size": f"{i + 1}b"}) for i in range(3)]
    big = gpu_pod({"gpu-rightsizer.io/model-size": "7b"})
    big["metadata"]["labels"] = {"padding": "x" * 2000}
    memo = DecisionMemo(PlainAnswers(default_policy()), max_key_bytes=3 * max(len(pod_key(pod)) for pod in small))
    assert len(pod_key(big)) > memo.max_key_bytes
    for pod in small:
        memo.answer(pod, 100)
        memo.answer(pod, 100)
    assert [memo.answer(big, 100)[1] for _ in range(3)] == ["miss"] * 3
    assert len(memo) == 3 and memo.key_bytes <= memo.max_key_bytes
    assert [memo.answer(pod, 100)[1] for pod in small] == ["hit"] * 3


def test_a_stream_of_distinct_pods_keeps_no_answers():
    memo = DecisionMemo(PlainAnswers(default_policy()), max_entries=8)
    for i in range(100):
        pod = gpu_pod({"gpu-rightsizer.io/model-size": "7b"})
        pod["metadata"]["labels"] = {"i": str(i)}
        assert memo.answer(pod, 100)[1] == "miss"
    assert len(memo) == 0


def test_threads_sharing_a_memo_get_each_pods_own_answer():
    policy = default_policy()
    memo = DecisionMemo(PlainAnswers(policy), max_entries=5)
    sizes = ["1b", "7b", "13b", "34b", "70b", "180b", "bad"]
    expected = {s: _answer_tuple(answer_pod(gpu_pod({"gpu-rightsizer.io/model-size": s}), policy)) for s in sizes}
    failures = []

    def hammer(offset: int) -> None:
        for i in range(300):
            size = sizes[(i + offset) % len(sizes)]
            answer, _ = memo.answer(gpu_pod({"gpu-rightsizer.io/model-size": size}), 100)
            if _answer_tuple(answer) != expected[size]:
                failures.append(size)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(memo) <= 5


def test_a_policy_reload_starts_an_empty_memo():
    holder = PolicyHolder(None, default_policy())
    review = captured_review("pod-create")
    for _ in range(3):
        policy, memo = holder.policy, holder.answers
        outcome = admit(review, memo, 4096)
    assert outcome.memo == "hit"
    deny_all = compile_policy({"pools": [{"name": "small", "gpuModel": "A30-24GB"}], "onOversize": "deny"})
    holder.replace(deny_all)
    policy, memo = holder.policy, holder.answers
    assert policy is deny_all and len(memo) == 0
    outcome = admit(review, memo, 4096)
    assert outcome.memo == "miss"
    assert outcome.response == admit(review, PlainAnswers(deny_all)).response


@pytest.mark.parametrize("name", ["pod-create", "deployment-pod-create", "pod-create-reinvoked"])
def test_captured_reviews_get_the_same_response_with_and_without_the_memo(name):
    review = captured_review(name)
    memo = DecisionMemo(PlainAnswers(default_policy()))
    for _ in range(3):
        assert admit(review, memo, 4096).response == admit(review, PlainAnswers(default_policy())).response
