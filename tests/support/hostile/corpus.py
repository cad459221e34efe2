"""The hostile-request corpus: the cases of cases.yaml, plus those made at test time
(rather than committed as megabytes): deep nesting, 1,000 containers, 1 MB values,
bodies over the limit, and every AdmissionReview field missing or of the wrong type.

``all_cases()`` is what tests/reliability/test_hostile_corpus.py sends to a real server;
``check_answer`` is the contract every answer must meet; bench/fuzz_decide.py seeds the
fuzzer with ``all_cases()``' bodies.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonpatch
import yaml

HERE = Path(__file__).parent
FIXTURE = HERE.parents[1] / "fixtures" / "admission-reviews" / "pod-create.json"
MAX_BODY_BYTES = 3 * 1024 * 1024  # webhook.admission.review.MAX_BODY_BYTES; checked by a test
MIB = 1024 * 1024
# No answer to a hostile request carries more than this beyond what the request had:
# the API server caps warnings at 4 KiB; messages quote at most 64 characters of a value.
ANSWER_OVERHEAD_BYTES = 8 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


@dataclass
class Case:
    name: str
    body: bytes
    expect: dict
    content_type: str | None = "application/json"
    method: str = "POST"
    path: str = "/mutate?timeout=10s"
    uid: str | None = None  # the uid an AdmissionReview answer must echo
    headers: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # pytest ids and failure messages: never the 3 MB body
        return f"Case({self.name}, {len(self.body)} bytes)"


def captured_review() -> dict:
    with open(FIXTURE) as fh:
        return json.load(fh)["review"]


def _review_case(name: str, review: dict, expect: dict, **kw) -> Case:
    uid = review.get("request", {}).get("uid") if isinstance(review.get("request"), dict) else None
    return Case(name, json.dumps(review).encode(), expect, uid=uid if isinstance(uid, str) else None, **kw)


def yaml_cases() -> list[Case]:
    cases = []
    for spec in yaml.safe_load((HERE / "cases.yaml").read_text()):
        kw = {k: spec[k] for k in ("content_type", "method", "path") if k in spec}
        if "body_file" in spec:
            cases.append(Case(spec["name"], (HERE / "bodies" / spec["body_file"]).read_bytes(), spec["expect"], **kw))
        else:
            review = jsonpatch.apply_patch(captured_review(), spec.get("patch", []))
            cases.append(_review_case(spec["name"], review, spec["expect"], **kw))
    return cases


# --- every field missing or of the wrong type -------------------------------------------
# JSON pointer, the type it should have, the answer when it is missing, and the answer
# when it holds a value of another type (null counts as missing where the code reads it
# as absent, which the Kubernetes API also does for optional fields).
R = "/request"
O = R + "/object"
C0 = O + "/spec/containers/0"
GPU = "nvidia.com~1gpu"
MODEL_SIZE = O + "/metadata/annotations/gpu-rightsizer.io~1model-size"

_400 = lambda mentions: {"status": 400, "mentions": mentions}  # noqa: E731
_DENIED = lambda mentions: {"review": "denied", "mentions": mentions}  # noqa: E731
_ALLOWED = {"review": "allowed"}
_PATCHED = {"review": "patched"}

FIELDS: list[tuple[str, type, dict, dict, bool]] = [
    # pointer, right type, when missing, when of a wrong type, null is "missing"
    ("/apiVersion", str, _400("apiVersion/kind"), _400("apiVersion/kind"), False),
    ("/kind", str, _400("apiVersion/kind"), _400("apiVersion/kind"), False),
    (R, dict, _400("request must be an object"), _400("request must be an object"), False),
    (R + "/uid", str, _400("request.uid"), _400("request.uid"), False),
    (R + "/kind", dict, _ALLOWED, _400("request.kind"), True),
    (R + "/kind/kind", str, _ALLOWED, _ALLOWED, True),
    (R + "/kind/group", str, _PATCHED, _ALLOWED, False),
    (R + "/operation", str, _ALLOWED, _400("request.operation"), True),
    (R + "/dryRun", bool, _PATCHED, _400("request.dryRun"), True),
    (R + "/namespace", str, _PATCHED, _400("request.namespace"), True),
    (R + "/name", str, _PATCHED, _PATCHED, True),
    (O + "/metadata/name", str, _PATCHED, _PATCHED, True),
    (R + "/subResource", str, _PATCHED, _400("request.subResource"), True),
    (O, dict, _DENIED("request.object"), _DENIED("request.object"), True),
    (O + "/metadata", dict, _ALLOWED, _DENIED("metadata"), True),
    (O + "/metadata/annotations", dict, _ALLOWED, _DENIED("metadata.annotations"), True),
    (MODEL_SIZE, str, _ALLOWED, _DENIED("metadata.annotations"), False),
    (O + "/spec", dict, _ALLOWED, _DENIED("spec"), True),
    (O + "/spec/containers", list, _ALLOWED, _DENIED("spec.containers"), True),
    (C0, dict, _ALLOWED, _DENIED("spec.containers[0]"), False),
    (C0 + "/resources", dict, _ALLOWED, _DENIED("spec.containers[0].resources"), True),
    (C0 + "/resources/limits", dict, _PATCHED, _DENIED("spec.containers[0].resources.limits"), True),
    (C0 + "/resources/requests", dict, _PATCHED, _DENIED("spec.containers[0].resources.requests"), True),
    (
        C0 + "/resources/limits/" + GPU,
        str,
        _PATCHED,
        {"review": "allowed", "warning_mentions": "nvidia.com/gpu"},
        False,
    ),
    (C0 + "/name", str, _PATCHED, _PATCHED, False),
    (O + "/spec/affinity", dict, _PATCHED, _DENIED("spec.affinity"), True),
    (O + "/spec/tolerations", list, _PATCHED, _DENIED("spec.tolerations"), True),
]
WRONG_VALUES: list[object] = [None, 0, -1, 1.5, True, "", "text", [], [1, "x"], {}, {"a": {"b": 1}}]


def _type_ok(value: object, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def _set(review: dict, pointer: str, value: object, remove: bool = False) -> dict:
    op = {"op": "remove", "path": pointer} if remove else {"op": "add", "path": pointer, "value": value}
    return jsonpatch.apply_patch(review, [op])


def field_cases() -> list[Case]:
    base = captured_review()
    # The model-size annotation is what the missing/wrong cases of it change.
    base["request"]["object"]["metadata"]["annotations"]["gpu-rightsizer.io/model-size"] = "7b"
    base["request"]["subResource"] = ""  # what is there to be removed or retyped
    base["request"]["object"]["spec"]["affinity"] = {}
    base["request"]["object"]["spec"]["tolerations"] = []
    cases = []
    for pointer, kind, missing, wrong, null_is_missing in FIELDS:
        label = pointer.strip("/").replace("/", ".").replace("~1", "/")
        cases.append(_review_case(f"missing:{label}", _set(base, pointer, None, remove=True), missing))
        for value in WRONG_VALUES:
            if _type_ok(value, kind):
                continue
            expect = missing if value is None and null_is_missing else wrong
            if pointer == C0 + "/resources/limits/" + GPU and value in (0, -1):
                expect = {"review": "allowed", "warning_mentions": f'"{value}"'}
            cases.append(_review_case(f"wrong:{label}={json.dumps(value)}", _set(base, pointer, value), expect))
    return cases


# --- big ones ----------------------------------------------------------------------------
def _with_annotation(name: str, value: str) -> dict:
    review = captured_review()
    review["request"]["object"]["metadata"]["annotations"][name] = value
    return review


def big_cases() -> list[Case]:
    cases = []
    review = captured_review()
    review["request"]["uid"] = "u" * 129
    cases.append(_review_case("uid-129-chars", review, _400("at most 128")))
    depth = 10_000
    cases.append(
        Case("nesting-10000-whole-body", b"[" * depth + b"]" * depth, {"status": 400, "mentions": "not valid JSON"})
    )
    review = captured_review()
    nested = json.dumps(review).encode()
    deep = b"[" * depth + b"1" + b"]" * depth
    cases.append(
        Case(
            "nesting-10000-in-spec",
            nested.replace(b'"containers":', b'"deep": ' + deep + b', "containers":', 1),
            {"status": 400, "mentions": "not valid JSON"},
        )
    )
    # 1,000 levels: past Python's recursion limit, within orjson's (1,024), so it reaches
    # the decision (json.dumps of it used to raise RecursionError there). Spliced in as
    # text: json.dumps cannot write it either.
    deep_1000 = b"[" * 1000 + b"1" + b"]" * 1000
    review = captured_review()
    review["request"]["object"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "@DEEP@"
    cases.append(
        Case(
            "gpu-limit-1000-deep-array",
            json.dumps(review).encode().replace(b'"@DEEP@"', deep_1000),
            {"review": "allowed", "warning_mentions": "nvidia.com/gpu"},
            uid=review["request"]["uid"],
        )
    )
    for where in ("name", "namespace"):
        review = captured_review()
        review["request"][where] = "@DEEP@"
        expect = _PATCHED if where == "name" else _400("request.namespace")
        cases.append(
            Case(
                f"request-{where}-1000-deep-array",
                json.dumps(review).encode().replace(b'"@DEEP@"', deep_1000),
                expect,
                uid=review["request"]["uid"],
            )
        )
    review = captured_review()
    review["apiVersion"] = "@DEEP@"
    cases.append(
        Case(
            "apiversion-1000-deep-array",
            json.dumps(review).encode().replace(b'"@DEEP@"', deep_1000),
            _400("apiVersion/kind"),
        )
    )

    review = captured_review()
    template = review["request"]["object"]["spec"]["containers"][0]
    review["request"]["object"]["spec"]["containers"] = [
        {**copy.deepcopy(template), "name": f"c{i:04d}"} for i in range(1000)
    ]
    cases.append(_review_case("1000-single-gpu-containers", review, _PATCHED))
    review = copy.deepcopy(review)
    for c in review["request"]["object"]["spec"]["containers"]:
        c["resources"]["limits"]["nvidia.com/gpu"] = c["resources"]["requests"]["nvidia.com/gpu"] = "2"
    cases.append(
        _review_case(
            "1000-two-gpu-containers", review, {"review": "allowed", "warning_mentions": "more warnings not shown"}
        )
    )

    for name in ("model-size", "gpu-memory", "precision", "profile", "workload-class"):
        annotation = "gpu-rightsizer.io/" + name
        cases.append(_review_case(f"1mb-{name}", _with_annotation(annotation, "9" * MIB), _DENIED(annotation)))
        cases.append(
            _review_case(
                f"1mb-control-chars-{name}",
                _with_annotation(annotation, ("\n\r\x00\x1b[2J\u2028" + "x" * 56) * (MIB // 64)),
                _DENIED(annotation + '="\\n\\r\\u0000'),
            )
        )
    # The quadratic backtracking of the old model-size pattern: digits, spaces, a letter.
    cases.append(
        _review_case(
            "model-size-redos-1mb",
            _with_annotation("gpu-rightsizer.io/model-size", "1" + " " * MIB + "x"),
            _DENIED("model-size"),
        )
    )
    cases.append(_review_case("unrelated-1mb-annotation", _with_annotation("example.com/notes", "\n" * MIB), _PATCHED))
    review = captured_review()
    review["request"]["object"]["metadata"]["annotations"]["example.com/pad"] = ""
    pad = MAX_BODY_BYTES - len(json.dumps(review).encode())
    review["request"]["object"]["metadata"]["annotations"]["example.com/pad"] = "x" * pad
    body = json.dumps(review).encode()
    assert len(body) == MAX_BODY_BYTES, len(body)
    cases.append(Case("body-at-the-limit", body, _PATCHED, uid=review["request"]["uid"]))
    # Over the limit: tests/reliability/test_hostile_corpus.py sends those on raw sockets,
    # reading the early 413 while still writing, as a client must.
    return cases


def all_cases() -> list[Case]:
    return yaml_cases() + field_cases() + big_cases()


# --- the contract -----------------------------------------------------------------------
def check_answer(case: Case, status: int, headers: dict, body: bytes) -> dict:
    """Assert the answer meets ``case.expect`` and the rules for every answer; return the
    decoded JSON."""
    expect = case.expect
    assert status != 500 and status < 500, f"{case.name}: HTTP {status} {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), f"{case.name}: {headers}"
    answer = json.loads(body)
    # Only a patch may grow with the request (1,000 containers, 1,000 renames); anything
    # else is bounded whatever the request held.
    patched = isinstance(answer.get("response"), dict) and "patch" in answer["response"]
    bound = len(case.body) * 2 + ANSWER_OVERHEAD_BYTES if patched else ANSWER_OVERHEAD_BYTES
    assert len(body) <= bound, f"{case.name}: answer of {len(body)} bytes"
    if "status" in expect:
        assert status == expect["status"], f"{case.name}: HTTP {status} {answer}"
        assert answer["code"] == status and isinstance(answer["error"], str)
        assert expect.get("mentions", "") in answer["error"], f"{case.name}: {answer['error']!r}"
        assert not _CONTROL.search(answer["error"]), f"{case.name}: raw control character in {answer['error']!r}"
        assert len(answer["error"]) <= 600, f"{case.name}: error of {len(answer['error'])} characters"
        return answer
    assert status == 200, f"{case.name}: HTTP {status} {answer}"
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == case.uid, f"{case.name}: uid {response['uid']!r} != {case.uid!r}"
    texts = list(response.get("warnings", []))
    if expect["review"] == "denied":
        assert response["allowed"] is False and "patch" not in response, f"{case.name}: {response}"
        assert response["status"]["code"] == 400
        message = response["status"]["message"]
        assert expect.get("mentions", "") in message, f"{case.name}: {message!r}"
        assert len(message) <= 600, f"{case.name}: message of {len(message)} characters"
        texts.append(message)
    else:
        assert response["allowed"] is True, f"{case.name}: {response}"
        assert ("patch" in response) == (expect["review"] == "patched"), f"{case.name}: {response}"
        if "patch" in response:
            assert response["patchType"] == "JSONPatch"
    if "warning_mentions" in expect:
        assert any(expect["warning_mentions"] in w for w in response.get("warnings", [])), f"{case.name}: {response}"
    assert sum(len(w) for w in response.get("warnings", [])) <= 4096, f"{case.name}: warnings over 4 KiB"
    for text in texts:
        assert not _CONTROL.search(text), f"{case.name}: raw control character in {text!r}"
    return answer
