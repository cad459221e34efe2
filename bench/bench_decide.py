"""Part 1: decision + patch in process, microseconds per pod, by pod kind.

    .venv/bin/python -m bench.bench_decide [--seconds 1.0]

Times, per pod kind of the corpus (bench/corpus.py):
- decide+patch: ``webhook.admission.admit.pod_patch`` (decide, mutate, diff) on the parsed pod;
- admit: what one HTTP request costs past the web framework: ``decode_review`` (orjson)
  of the body, ``admit``, and ``orjson.dumps`` of the response review;
- the decision memo (webhook/admission/memo.py): ``pod_key`` alone, ``admit`` answered from a
  warm memo (a controller's replicas), and ``admit`` through a memo that has never seen
  the pod (what every distinct pod pays for the memo: the key, then the decision);
- the memory of a full memo (tracemalloc): MAX_ENTRIES variants of a pod, each seen twice;
- for reference, the alternatives the code chose against: stdlib ``json`` instead of
  orjson for the admit path, and ``jsonpatch.make_patch`` (a full structural diff)
  instead of the identity-aware diff.
Target: decide+patch median <= 50 us for the typical pod ('single', the captured pod).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import time
import tracemalloc

import jsonpatch
import orjson

from bench.corpus import body_of, corpus
from bench.stats import machine, md_table, summary, write_result
from webhook.admission import review as rv
from webhook.admission.admit import admit
from webhook.admission.answer import PlainAnswers, pod_patch
from webhook.admission.memo import MAX_ENTRIES, DecisionMemo, pod_key
from webhook.core.decision import decide
from webhook.core.mutation import mutate_pod
from webhook.core.policy import default_policy

TARGET_US = 50.0
TYPICAL = "single"


def time_calls(fn, seconds: float, min_calls: int = 200) -> list[float]:
    """Per-call wall time in microseconds, for about ``seconds`` (after a warm-up)."""
    for _ in range(20):
        fn()
    out: list[float] = []
    clock = time.perf_counter_ns
    gc_was = gc.isenabled()
    deadline = time.perf_counter() + seconds
    try:
        while len(out) < min_calls or time.perf_counter() < deadline:
            t0 = clock()
            fn()
            out.append((clock() - t0) / 1000)
    finally:
        if gc_was:
            gc.enable()
    return out


def admit_body(body: bytes, policy) -> bytes:
    review = rv.decode_review(body)
    return orjson.dumps(rv.review_of(admit(review, PlainAnswers(policy)).response))


def admit_body_stdlib_json(body: bytes, policy) -> bytes:
    review = json.loads(body)
    return json.dumps(rv.review_of(admit(review, PlainAnswers(policy)).response)).encode()


def make_patch_full_diff(pod: dict, policy) -> list:
    decision = decide(pod, policy)
    return jsonpatch.make_patch(pod, mutate_pod(pod, decision, policy)).patch


def admit_body_memo(body: bytes, policy, memo: DecisionMemo) -> bytes:
    review = rv.decode_review(body)
    return orjson.dumps(rv.review_of(admit(review, memo, len(body)).response))


def full_memo_memory(pod: dict, policy) -> dict:
    """MiB a memo holds once full of ``pod``'s variants (one label apart), and of it, keys."""
    variants = []
    for i in range(MAX_ENTRIES):
        variant = copy.deepcopy(pod)
        variant.setdefault("metadata", {}).setdefault("labels", {})["bench/variant"] = str(i)
        variants.append(variant)
    memo = DecisionMemo(PlainAnswers(policy))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for variant in variants:
            memo.answer(variant, 0)
            memo.answer(variant, 0)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {"entries": len(memo), "mib": held / 2**20, "keys_mib": memo.key_bytes / 2**20}


def run(seconds: float = 1.0) -> dict:
    policy = default_policy()
    kinds = corpus()
    rows = []
    results = {}
    for kind, review in kinds.items():
        pod = review["request"]["object"]
        body = body_of(review)
        outcome = admit(review, PlainAnswers(policy))
        warm = DecisionMemo(PlainAnswers(policy))
        for _ in range(2):
            admit(review, warm, len(body))
        entry = {
            "pod_bytes": len(orjson.dumps(pod)),
            "result": outcome.result,
            "patch_ops": len(outcome.patch),
            "decide_patch_us": summary(time_calls(lambda: pod_patch(pod, policy), seconds)),
            "admit_us": summary(time_calls(lambda: admit_body(body, policy), seconds)),
            "pod_key_us": summary(time_calls(lambda: pod_key(pod), seconds / 3)),
            "admit_memo_hit_us": summary(time_calls(lambda: admit_body_memo(body, policy, warm), seconds / 3)),
            "admit_memo_unseen_us": summary(
                time_calls(lambda: admit_body_memo(body, policy, DecisionMemo(PlainAnswers(policy))), seconds / 3)
            ),
            "admit_stdlib_json_us": summary(time_calls(lambda: admit_body_stdlib_json(body, policy), seconds / 3)),
            "jsonpatch_make_patch_us": summary(time_calls(lambda: make_patch_full_diff(pod, policy), seconds / 3)),
        }
        results[kind] = entry
        rows.append(
            [
                kind,
                entry["pod_bytes"],
                entry["result"],
                entry["patch_ops"],
                entry["decide_patch_us"]["p50"],
                entry["decide_patch_us"]["p99"],
                entry["admit_us"]["p50"],
                entry["admit_us"]["p99"],
                entry["pod_key_us"]["p50"],
                entry["admit_memo_hit_us"]["p50"],
                entry["admit_memo_unseen_us"]["p50"],
                entry["admit_stdlib_json_us"]["p50"],
                entry["jsonpatch_make_patch_us"]["p50"],
            ]
        )
    typical = results[TYPICAL]["decide_patch_us"]["p50"]
    memory = {
        kind: full_memo_memory(kinds[kind]["request"]["object"], policy) for kind in (TYPICAL, "affinity-3-terms")
    }
    data = {
        "machine": machine(),
        "seconds_per_kind": seconds,
        "kinds": results,
        "full_memo_memory": memory,
        "target": {"typical": TYPICAL, "median_us_max": TARGET_US, "median_us": typical, "met": typical <= TARGET_US},
    }
    md = (
        "## Decision + patch in process (us per pod)\n\n"
        + md_table(
            [
                "pod kind",
                "pod bytes",
                "result",
                "patch ops",
                "decide+patch p50",
                "p99",
                "admit (orjson) p50",
                "p99",
                "memo key p50",
                "admit, memo hit p50",
                "admit, memo unseen p50",
                "admit (stdlib json) p50",
                "decide+jsonpatch.make_patch p50",
            ],
            rows,
        )
        + f"\nTypical pod ('{TYPICAL}') decide+patch median {typical:.1f} us; target <= {TARGET_US:.0f} us: "
        + ("met" if typical <= TARGET_US else "NOT met")
        + f". Python {data['machine']['python']}, {data['machine']['cpus']} cores, one thread, "
        f"loadavg at start {data['machine']['loadavg_at_start']}.\n"
        + f"\nA full decision memo per worker (tracemalloc; {MAX_ENTRIES} variants of one pod, each seen twice): "
        + "; ".join(
            f"'{kind}' {m['entries']} answers, {m['mib']:.1f} MiB, of it keys {m['keys_mib']:.1f} MiB"
            for kind, m in memory.items()
        )
        + ".\n"
    )
    write_result("decide", data, md)
    return data | {"markdown": md}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per pod kind and measurement")
    args = parser.parse_args()
    print(run(args.seconds)["markdown"])


if __name__ == "__main__":
    main()
