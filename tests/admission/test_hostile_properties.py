"""Properties of decode + admit under mangled and hostile input (hypothesis), in process.

tests/test_properties.py holds the properties of the mutation of valid pods; these
start from valid AdmissionReviews and break them: any field replaced by any JSON value
or removed, hostile annotation values, random bytes. Whatever comes in:
- decode_review raises nothing but RequestError (the app's 4xx);
- admit() never raises, and answers a well-formed response echoing the uid;
- a patch applies with jsonpatch; applied, a second pass patches nothing;
- when the pod that came in was a valid Pod, the patched one is too (kubernetes-validate).
"""

from __future__ import annotations

import base64
import copy
import json

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support.fixtures import captured_review, validate_pod
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers
from webhook.admission.review import decode_review
from webhook.core.errors import RequestError

A = "gpu-rightsizer.io/"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson can write
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
hostile_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        ["1e309", "-1", "NaN", "Infinity", "-0", "0x10", "1e-999999999", "7b\n", "\u0667b", " " * 50 + "7"]
    ),
    st.builds(lambda c, n: c * n, st.sampled_from(["\n", "\x00", "\u2028", "9", " "]), st.integers(1, 5000)),
)
ANNOTATIONS = [A + n for n in ("model-size", "gpu-memory", "precision", "profile", "workload-class", "skip")]


def _paths(value, prefix=()):
    """Every path (tuple of keys/indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, prefix + (i,))


# Fields the webhook reads or merges into, present in the captured pod or not: a random
# pick among existing paths alone would almost never put a string where an affinity goes.
_O = ("request", "object")
_C0 = _O + ("spec", "containers", 0)
KNOWN_PATHS = [
    ("request", "kind"),
    ("request", "operation"),
    ("request", "subResource"),
    ("request", "dryRun"),
    _O + ("metadata",),
    _O + ("metadata", "annotations"),
    _O + ("spec",),
    _O + ("spec", "containers"),
    _O + ("spec", "initContainers"),
    _C0,
    _C0 + ("name",),
    _C0 + ("resources",),
    _C0 + ("resources", "limits"),
    _C0 + ("resources", "requests"),
    _C0 + ("resources", "limits", "nvidia.com/gpu"),
    _C0 + ("resources", "requests", "nvidia.com/gpu"),
    _O + ("spec", "affinity"),
    _O + ("spec", "affinity", "nodeAffinity"),
    _O + ("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"),
    _O + ("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"),
    _O + ("spec", "tolerations"),
    _O + ("spec", "priorityClassName"),
    _O + ("spec", "priority"),
]


def _mangle(review: dict, path: tuple, new, remove: bool) -> dict:
    review = copy.deepcopy(review)
    if not path:
        return new
    node = review
    for key in path[:-1]:
        if isinstance(node, dict) and isinstance(key, str) and key not in node:
            node[key] = {}
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return review  # the path runs through a value an earlier mangle replaced
    if isinstance(node, dict) and not isinstance(path[-1], str):
        return review
    if remove:
        if isinstance(node, dict):
            node.pop(path[-1], None)
        elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
            del node[path[-1]]
    elif isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)):
        node[path[-1]] = new
    return review


@st.composite
def base_reviews(draw):
    review = captured_review("pod-create")
    review["request"]["uid"] = draw(st.text(min_size=1, max_size=128))
    annotations = review["request"]["object"]["metadata"]["annotations"]
    for name in draw(st.lists(st.sampled_from(ANNOTATIONS), unique=True, max_size=3)):
        annotations[name] = draw(hostile_text)
    return review


@st.composite
def mangled_reviews(draw):
    # From a pod that is rewritten when left alone, so that mangling reaches the
    # mutation and not only the annotation checks (base_reviews covers those).
    review = captured_review("pod-create")
    review["request"]["uid"] = draw(st.text(min_size=1, max_size=128))
    for _ in range(draw(st.integers(1, 2))):
        if not isinstance(review, dict):
            break
        paths = list(_paths(review))
        path = draw(st.sampled_from(KNOWN_PATHS) if draw(st.integers(0, 9)) < 7 else st.sampled_from(paths))
        remove = bool(path) and draw(st.booleans())
        review = _mangle(review, path, None if remove else draw(json_values), remove)
    return review


def _check_answer(review: dict) -> None:
    """The invariants of one decoded review."""
    outcome = admit(review, PlainAnswers(POLICY))  # must not raise
    response = outcome.response
    assert response["uid"] == review["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    json.dumps(response)  # plain JSON
    if not response["allowed"]:
        assert "patch" not in response and response["status"]["code"] == 400
        assert "\n" not in response["status"]["message"]
        return
    for warning in response.get("warnings", []):
        assert "\n" not in warning and len(warning) <= 256
    assert sum(len(w) for w in response.get("warnings", [])) <= 4096
    if "patch" not in response:
        return
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    pod = review["request"]["object"]
    patched = jsonpatch.apply_patch(pod, patch)
    again = copy.deepcopy(review)
    again["request"]["object"] = patched
    assert admit(again, PlainAnswers(POLICY)).patch == (), "a second pass must change nothing"
    if _valid_pod(pod):
        validate_pod(patched)


def _valid_pod(pod) -> bool:
    try:
        validate_pod(pod)
    except Exception:  # noqa: BLE001 - kubernetes-validate raises several kinds
        return False
    return True


@pytest.fixture(autouse=True, scope="module")
def _policy(policy):
    global POLICY
    POLICY = policy


@settings(SETTINGS, max_examples=500)
@given(mangled_reviews())
def test_mangled_reviews_get_a_4xx_or_a_well_formed_answer(review):
    body = orjson.dumps(review)
    try:
        decoded = decode_review(body)
    except RequestError as err:
        assert 400 <= err.status < 500 and "\n" not in str(err)
        return
    _check_answer(decoded)


@SETTINGS
@given(base_reviews())
def test_hostile_annotation_values_never_break_the_contract(review):
    _check_answer(decode_review(orjson.dumps(review)))


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.builds(
            lambda body, cut: body[:cut],
            st.just(orjson.dumps(captured_review("pod-create"))),
            st.integers(0, 4000),
        ),
        st.builds(lambda v: orjson.dumps(v), json_values),
    )
)
def test_any_bytes_decode_or_raise_request_error(body):
    try:
        review = decode_review(body)
    except RequestError as err:
        assert 400 <= err.status < 500
        return
    _check_answer(review)


# kubernetes-validate takes ~0.1 s a pod: few examples (test_properties.py has the rest).
@settings(SETTINGS, max_examples=25)
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=20))
def test_valid_pods_with_any_other_annotations_stay_valid(extra):
    review = captured_review("pod-create")
    review["request"]["uid"] = "prop"
    annotations = review["request"]["object"]["metadata"]["annotations"]
    for key, value in extra.items():
        if not key.startswith(A):
            annotations[key] = value
    assume(_valid_pod(review["request"]["object"]))
    _check_answer(review)


def _containers_review(count: int, gpus: str) -> dict:
    review = captured_review("pod-create")
    template = review["request"]["object"]["spec"]["containers"][0]
    containers = []
    for i in range(count):
        container = copy.deepcopy(template)
        container["name"] = f"c{i:04d}"
        container["resources"]["limits"]["nvidia.com/gpu"] = container["resources"]["requests"]["nvidia.com/gpu"] = gpus
        containers.append(container)
    review["request"]["object"]["spec"]["containers"] = containers
    return review


def test_a_thousand_containers_do_not_inflate_the_decision_annotation():
    outcome = admit(_containers_review(1000, "1"), PlainAnswers(POLICY))
    decision = next(op["value"] for op in outcome.patch if op["path"].endswith("gpu-rightsizer.io~1decision"))
    assert len(decision) < 600 and "and 995 more containers" in decision, decision


def test_a_thousand_warnings_fit_the_api_servers_4_kib():
    warnings = admit(_containers_review(1000, "2"), PlainAnswers(POLICY)).response["warnings"]
    assert sum(map(len, warnings)) <= 4096 and all(len(w) <= 256 for w in warnings)
    assert warnings[-1].endswith("more warnings not shown") and warnings[-1].split()[1].isdigit()
