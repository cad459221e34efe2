"""The benchmark corpus (bench/corpus.py) measures real work: every GPU pod kind is
right-sized by a patch that applies, gives a schema-valid pod, and is idempotent; the
no-GPU kind is left alone. No timing here: bench/ prints the figures."""

from __future__ import annotations

import base64

import jsonpatch
import orjson
import pytest

from bench.corpus import body_of, corpus
from tests.support.fixtures import review_for, validate_pod
from webhook.admission import review as rv
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers
from webhook.core.policy import default_policy  # noqa: E402

KINDS = corpus()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_corpus_pod_is_rightsized_by_a_valid_idempotent_patch(kind):
    policy = default_policy()
    review = rv.decode_review(body_of(KINDS[kind]))
    response = admit(review, PlainAnswers(policy)).response
    assert response["allowed"] is True
    if kind == "no-gpu":
        assert "patch" not in response
        return
    patch = orjson.loads(base64.b64decode(response["patch"]))
    mutated = jsonpatch.apply_patch(review["request"]["object"], patch)
    validate_pod(mutated)
    limits = [c["resources"].get("limits", {}) for c in mutated["spec"]["containers"]]
    assert any(k.startswith("nvidia.com/mig-") for lim in limits for k in lim)
    assert not any("nvidia.com/gpu" in lim for lim in limits)
    assert "patch" not in admit(review_for(mutated, uid="again"), PlainAnswers(policy)).response


def test_corpus_sizes_are_as_named():
    assert len(body_of(KINDS["pod-200k"])) >= 200_000
    assert 19_000 <= len(body_of(KINDS["env-volumes-20k"])) < 40_000
    multi = KINDS["multi-init-sidecars"]["request"]["object"]["spec"]
    assert len(multi["initContainers"]) == 2 and len(multi["containers"]) == 3
