"""Coverage-guided fuzzing (atheris, libFuzzer) of the webhook's decode + decide path:
bytes -> decode_review -> admit (decide, mutate, patch). A crash is any exception other
than RequestError from decode_review, or any exception at all from admit, or an answer
that breaks the contract (uid not echoed, a patch that does not apply).

    bench/fuzz.sh 5                      # 5 minutes, corpus in bench/fuzz-corpus/
    python -m bench.fuzz_decide -atheris_runs=10000 bench/fuzz-corpus

Seeds: the captured AdmissionReviews and the hostile corpus of tests/hostile (written
into the corpus directory on first run; libFuzzer adds what it finds there).
"""

from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]

with atheris.instrument_imports():
    import jsonpatch

    from webhook.admission.admit import admit
    from webhook.admission.answer import PlainAnswers
    from webhook.admission.review import decode_review
    from webhook.core.errors import RequestError
    from webhook.core.policy import default_policy

POLICY = default_policy()
MAX_SEED_BYTES = 64 * 1024  # the fuzzer mutates small inputs far faster; 1 MB seeds stay in the CI corpus


def check(data: bytes) -> None:
    try:
        review = decode_review(data)
    except RequestError:
        return
    outcome = admit(review, PlainAnswers(POLICY))
    response = outcome.response
    if response.get("uid") != review["request"]["uid"] or not isinstance(response.get("allowed"), bool):
        raise AssertionError(f"malformed response {response!r}")
    if "patch" in response:
        patch = json.loads(base64.b64decode(response["patch"]))
        jsonpatch.apply_patch(review["request"]["object"], patch)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    check(data)


# Byte-level mutation of JSON mostly makes invalid JSON, which decode_review refuses in
# its first line. Half the time the mutator works on the structure instead: it replaces
# or removes one node of the parsed document with a value from a pool of awkward ones.
_AWKWARD = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    1.5,
    2**63 - 1,
    -(2**63),
    1e308,
    "",
    "1",
    "7b",
    "1e309",
    "-1",
    "NaN",
    "Infinity",
    "1Ei",
    "18Gi",
    "fp16",
    "true",
    "1g.20gb",
    "Pod",
    "CREATE",
    "\n",
    "\x00",
    "\u2028",
    "9" * 70,
    "1" + " " * 60 + "x",
    [],
    [1],
    {},
    {"a": 1},
    ["x", {"y": None}],
]
_KEYS = [
    "request",
    "uid",
    "kind",
    "operation",
    "object",
    "metadata",
    "annotations",
    "spec",
    "containers",
    "initContainers",
    "resources",
    "limits",
    "requests",
    "nvidia.com/gpu",
    "affinity",
    "nodeAffinity",
    "tolerations",
    "priorityClassName",
    "gpu-rightsizer.io/model-size",
    "gpu-rightsizer.io/gpu-memory",
    "gpu-rightsizer.io/precision",
    "gpu-rightsizer.io/profile",
    "gpu-rightsizer.io/workload-class",
    "gpu-rightsizer.io/skip",
    "subResource",
    "dryRun",
    "name",
]


def _nodes(value, found):
    found.append(value)
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        _nodes(child, found)
    return found


def CustomMutator(data: bytes, max_size: int, seed: int) -> bytes:  # noqa: N802 - atheris' name
    rng = random.Random(seed)
    if rng.random() < 0.5:
        return atheris.Mutate(data, max_size)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return atheris.Mutate(data, max_size)
    containers = [n for n in _nodes(doc, []) if isinstance(n, (dict, list)) and n]
    if not containers:
        return atheris.Mutate(data, max_size)
    node = rng.choice(containers)
    value = rng.choice(_AWKWARD + [rng.choice(containers)])
    if isinstance(node, dict):
        key = rng.choice(list(node) + _KEYS)
        if rng.random() < 0.2:
            node.pop(key, None)
        else:
            node[key] = value
    else:
        index = rng.randrange(len(node))
        if rng.random() < 0.2:
            del node[index]
        else:
            node[index] = value
    try:
        out = json.dumps(doc).encode()
    except (ValueError, RecursionError):  # a node placed inside itself
        return atheris.Mutate(data, max_size)
    return out[:max_size]


def write_seeds(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        return 0
    from tests.support.hostile.corpus import all_cases

    count = 0
    for capture in sorted((ROOT / "tests" / "fixtures" / "admission-reviews").glob("*.json")):
        (directory / f"capture-{capture.stem}").write_bytes(
            json.dumps(json.loads(capture.read_text())["review"]).encode()
        )
        count += 1
    for case in all_cases():
        if len(case.body) <= MAX_SEED_BYTES:
            name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case.name)[:100]
            (directory / f"hostile-{name}").write_bytes(case.body)
            count += 1
    return count


def main() -> None:
    corpus_dirs = [a for a in sys.argv[1:] if not a.startswith("-")]
    for directory in corpus_dirs:
        written = write_seeds(Path(directory))
        if written:
            print(f"fuzz_decide: wrote {written} seeds into {directory}", file=sys.stderr)
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=CustomMutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
