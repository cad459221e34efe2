"""Sizing a serving pod from its own command line (issue 19; webhook/core/engine_args.py).

Command lines are copied from the engines' documentation and model cards (source beside
each). Expected figures are worked by hand from the formula of README.md, "Sizing
inference servers": weights = params x bytes; KV = 2 x layers x kv-heads x head-dim x 2 B
x context (one sequence: what the engine needs to start); fixed 2.25 GiB; fits when
need <= 0.9 x the profile's usable memory (H100 80GB: 1g.10gb 9.62, 1g.20gb 19.50,
3g.40gb 39.25, 7g.80gb 79.00 GiB: the least any driver gave).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core import annotations as ann
from webhook.core.decision import decide
from webhook.core.engine_args import read_container
from webhook.core.policy import default_policy, parse_policy_yaml

POLICY = default_policy()
GIB = 2**30
MIB = 2**20
FIXED = 2304 * MIB


def pod(command=None, args=None, *, image="vllm/vllm-openai:v0.10.1", env=None, annotations=None, gpus="1"):
    container = {"name": "server", "image": image, "resources": {"limits": {"nvidia.com/gpu": gpus}}}
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {"metadata": {"name": "p", "annotations": dict(annotations or {})}, "spec": {"containers": [container]}}


# (case, pod, action, profile, need bytes or None, substrings of message + warnings)
REAL = [
    # The issue's own example: 8.03B x 2 = 14.96 GiB; KV 2 x 32 x 8 x 128 x 2 x 8192 = 1 GiB;
    # 18.21 GiB > 0.9 x 19.50 = 17.55 (not 1g.20gb, where the README says vLLM cannot start).
    (
        "issue: vllm serve --max-model-len 8192 --max-num-seqs 16",
        pod(["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192", "--max-num-seqs", "16"]),
        "rewrite",
        "3g.40gb",
        8030261248 * 2 + GIB + FIXED,
        ["--max-model-len 8192", "--max-num-seqs 16 is not reserved", ann.MAX_CONCURRENCY],
    ),
    # vLLM quickstart (docs.vllm.ai, Quickstart, "OpenAI-Compatible Server"). No
    # --max-model-len: the Instruct config's max_position_embeddings 32768.
    # 1543714304 x 2 + 2 x 28 x 2 x 128 x 2 x 32768 (0.875 GiB) = 6.0 GiB <= 0.9 x 9.75.
    (
        "vLLM quickstart",
        pod(["vllm", "serve", "Qwen/Qwen2.5-1.5B-Instruct"]),
        "rewrite",
        "1g.10gb",
        1543714304 * 2 + 939524096 + FIXED,
        ["context 32768: vLLM's default --max-model-len", "max_position_embeddings"],
    ),
    # vLLM's Kubernetes deployment page: command ["/bin/sh", "-c"], the serve line in args,
    # an underscore flag. Llama 3.2 1B at its 131072 default: KV 2 x 16 x 8 x 64 x 2 x
    # 131072 = 4 GiB; 2.30 + 4 + 2.25 = 8.55 GiB <= 8.78.
    (
        "vLLM docs: Kubernetes deployment (sh -c)",
        pod(
            ["/bin/sh", "-c"],
            [
                "vllm serve meta-llama/Llama-3.2-1B-Instruct --trust-remote-code "
                "--enable-chunked-prefill --max_num_batched_tokens 1024"
            ],
        ),
        "rewrite",
        "1g.10gb",
        1235814400 * 2 + 4 * GIB + FIXED,
        ["--max_num_batched_tokens 1024"],
    ),
    # DeepSeek-R1-Distill model card (vLLM): tensor parallel over 2 GPUs.
    (
        "R1 distill card: --tensor-parallel-size 2",
        pod(
            [
                "vllm",
                "serve",
                "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
                "--tensor-parallel-size",
                "2",
                "--max-model-len",
                "32768",
                "--enforce-eager",
            ]
        ),
        "unchanged",
        None,
        None,
        ["--tensor-parallel-size 2: it uses 2 GPUs"],
    ),
    # The same card's SGLang line: --tp 2.
    (
        "R1 distill card: SGLang --tp 2",
        pod(
            [
                "python3",
                "-m",
                "sglang.launch_server",
                "--model",
                "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
                "--trust-remote-code",
                "--tp",
                "2",
            ],
            image="lmsysorg/sglang:latest",
        ),
        "unchanged",
        None,
        None,
        ["--tp 2: it uses 2 GPUs"],
    ),
    # Qwen3 model card (SGLang). Qwen3-8B: 8190735360 x 2 + 2 x 36 x 8 x 128 x 2 x 40960
    # (5.625 GiB) = 23.1 GiB <= 35.55.
    (
        "Qwen3 card: sglang.launch_server",
        pod(
            ["python3", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B", "--reasoning-parser", "qwen3"],
            image="lmsysorg/sglang:latest",
        ),
        "rewrite",
        "3g.40gb",
        8190735360 * 2 + 6039797760 + FIXED,
        ["SGLang's default --context-length"],
    ),
    # gpt-oss model card (vLLM): MXFP4 weights 13761264768 B; 12 full layers x 131072 x
    # 2 x 8 x 64 x 2 = 3 GiB + 12 sliding layers x 8336 tokens (128 - 1 + 8192 -> 521
    # blocks of 16) x 2048 B.
    (
        "gpt-oss card: vllm serve openai/gpt-oss-20b",
        pod(["vllm", "serve", "openai/gpt-oss-20b"]),
        "rewrite",
        "3g.40gb",
        13761264768 + 3 * GIB + 12 * 8336 * 2048 + FIXED,
        ["mxfp4 checkpoint", "12 of 24 layers sliding-window 128"],
    ),
    # TGI quick tour (docker run ... text-generation-inference --model-id ...): args only.
    # --quantize fp8: 8.03B x 1 = 7.48 GiB; the cache stays bf16: 1 GiB.
    (
        "TGI image, args only, --quantize fp8",
        pod(
            None,
            [
                "--model-id",
                "meta-llama/Llama-3.1-8B-Instruct",
                "--max-input-tokens",
                "8000",
                "--max-total-tokens",
                "8192",
                "--quantize",
                "fp8",
            ],
            image="ghcr.io/huggingface/text-generation-inference:3.0.1",
        ),
        "rewrite",
        "1g.20gb",
        8030261248 + GIB + FIXED,
        ["--quantize fp8", "--max-total-tokens 8192"],
    ),
    # TGI configured by env (the launcher's [env: ...] names), fraction 0.85.
    (
        "TGI env MODEL_ID / MAX_TOTAL_TOKENS / CUDA_MEMORY_FRACTION",
        pod(
            None,
            None,
            image="ghcr.io/huggingface/text-generation-inference:3.0.1",
            env={"MODEL_ID": "Qwen/Qwen2.5-7B-Instruct", "MAX_TOTAL_TOKENS": "16384", "CUDA_MEMORY_FRACTION": "0.85"},
        ),
        "rewrite",
        "3g.40gb",
        7615616512 * 2 + 2 * 28 * 4 * 128 * 2 * 16384 + FIXED,
        ["<= 0.85 x 39.25 GiB", "CUDA_MEMORY_FRACTION=0.85"],
    ),
    # Qwen's AWQ card: vllm serve Qwen/Qwen2.5-14B-Instruct-AWQ (int4 from the name; the
    # Instruct config's 32768 context): 14770033664 x 9/16 (7.74 GiB) + 2 x 48 x 8 x 128 x 2 x
    # 32768 (6 GiB) + 2.25 = 15.99 GiB <= 0.9 x 19.50 = 17.55.
    (
        "Qwen AWQ card",
        pod(["vllm", "serve", "Qwen/Qwen2.5-14B-Instruct-AWQ"]),
        "rewrite",
        "1g.20gb",
        14770033664 * 9 // 16 + 6 * GIB + FIXED,
        ["(int4: AWQ checkpoint)"],
    ),
    # A GGUF repackaging: its size is not derivable; the pod is left alone, and told why.
    (
        "GGUF checkpoint",
        pod(["vllm", "serve", "unsloth/Llama-3.3-70B-Instruct-GGUF"]),
        "unchanged",
        None,
        None,
        ["GGUF", "describe it with gpu-rightsizer.io/model"],
    ),
    # A model outside the table is left alone with the hint (not refused).
    (
        "model not in the table",
        pod(["vllm", "serve", "NousResearch/Meta-Llama-3-8B-Instruct", "--dtype", "auto"]),
        "unchanged",
        None,
        None,
        ["which the architecture table does not know", "architectures:"],
    ),
]


@pytest.mark.parametrize("case,spec,action,profile,need,texts", REAL, ids=[c[0] for c in REAL])
def test_real_command_lines(case, spec, action, profile, need, texts):
    decision = decide(spec, POLICY)
    assert decision.action == action, decision.message
    if profile:
        assert decision.profile.name == profile
    if need is not None:
        assert decision.need.bytes == need
    said = " ".join((decision.message, *decision.warnings))
    for text in texts:
        assert text in said


def test_vllm_image_without_flags_is_sized_as_before():
    # The captured pods run vllm/vllm-openai with no args: nothing to read, same decision.
    with_image = pod(None, None, annotations={ann.MODEL_SIZE: "7b"})
    without = pod(None, None, image="busybox", annotations={ann.MODEL_SIZE: "7b"})
    assert decide(with_image, POLICY) == decide(without, POLICY)


def test_flag_equals_form_and_last_wins():
    a = decide(pod(["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len=4096"]), POLICY)
    b = decide(
        pod(["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "99", "--max-model-len", "4096"]),
        POLICY,
    )
    assert a.need == b.need and "(4096 x 1)" in a.need.explanation


@pytest.mark.parametrize(
    "text,tokens", [("32k", 32000), ("32K", 32768), ("25.6k", 25600), ("1m", 10**6), ("8192", 8192)]
)
def test_vllm_human_readable_max_model_len(text, tokens):
    d = decide(pod(["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", text]), POLICY)
    assert f"({tokens} x 1)" in d.need.explanation


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "lots"], "--max-model-len"),
        (
            ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--gpu-memory-utilization", "1.5"],
            "--gpu-memory-utilization",
        ),
        (["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--kv-cache-dtype", "int3"], "--kv-cache-dtype"),
        (["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "-tp", "two"], "-tp"),
        (["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--quantization", "magic"], "--quantization"),
        (
            ["python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B", "--mem-fraction-static", "0"],
            "--mem-fraction-static",
        ),
        (["text-generation-launcher", "--model-id", "Qwen/Qwen3-8B", "--max-total-tokens", "-5"], "--max-total-tokens"),
    ],
)
def test_a_value_that_does_not_parse_is_an_invalid_setting(argv, flag):
    decision = decide(pod(argv), POLICY)
    assert decision.action == "deny"
    assert decision.message.startswith(f"{flag} ") and "is invalid: expected" in decision.message
    assert 'container "server"' in decision.message
    ignore = parse_policy_yaml("pools: [{name: h, gpuModel: H100-80GB}]\nonInvalidAnnotation: ignore\n")
    assert decide(pod(argv), ignore).action == "unchanged"


def test_unknown_flags_are_ignored():
    plain = decide(pod(["vllm", "serve", "Qwen/Qwen3-8B", "--max-model-len", "8192"]), POLICY)
    noisy = decide(
        pod(
            [
                "vllm",
                "serve",
                "Qwen/Qwen3-8B",
                "--enable-reasoning",
                "--reasoning-parser",
                "deepseek_r1",
                "--max-model-len",
                "8192",
                "--port",
                "8000",
                "--some-future-flag",
            ]
        ),
        POLICY,
    )
    assert plain.need == noisy.need and plain.profile == noisy.profile


def test_annotation_wins_and_the_warning_says_so():
    d = decide(
        pod(
            ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "32768"],
            annotations={ann.CONTEXT_LENGTH: "4096"},
        ),
        POLICY,
    )
    assert "(4096 x 1)" in d.need.explanation
    assert any(w.startswith("context-length 4096 overrides --max-model-len 32768") for w in d.warnings)
    # Agreement (8k == 8192) is not a disagreement.
    same = decide(
        pod(
            ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192"],
            annotations={ann.CONTEXT_LENGTH: "8k"},
        ),
        POLICY,
    )
    assert not any("overrides" in w for w in same.warnings)


def test_max_concurrency_annotation_asks_for_more():
    argv = ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192", "--max-num-seqs", "4"]
    one = decide(pod(argv), POLICY)
    four = decide(pod(argv, annotations={ann.MAX_CONCURRENCY: "4"}), POLICY)
    assert four.need.bytes - one.need.bytes == 3 * GIB
    assert four.profile.name == "3g.40gb"


def test_policy_switch_turns_reading_off():
    off = parse_policy_yaml("pools: [{name: h, gpuModel: H100-80GB}]\nreadEngineArgs: false\n")
    spec = pod(["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "lots", "-tp", "2"])
    decision = decide(spec, off)
    assert decision.action == "unchanged" and decision.message.startswith("no sizing annotation")


def test_unresolved_variables_are_not_read_nor_refused():
    # $(MAX_LEN) with a literal env value is Kubernetes-expanded; ${LEN} inside a shell is not visible.
    expanded = decide(
        pod(
            ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "$(MAX_LEN)"],
            env={"MAX_LEN": "4096"},
        ),
        POLICY,
    )
    assert "(4096 x 1)" in expanded.need.explanation
    hidden = decide(
        pod(["sh", "-c", 'exec vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len "${LEN}"']), POLICY
    )
    assert hidden.action == "rewrite"
    assert any("cannot see at admission" in w for w in hidden.warnings)


def test_several_gpus_in_every_spelling():
    for argv in (
        ["vllm", "serve", "Qwen/Qwen3-8B", "-tp", "2"],
        ["vllm", "serve", "Qwen/Qwen3-8B", "--pipeline-parallel-size=2"],
        ["python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B", "--tp-size", "4"],
        ["text-generation-launcher", "--model-id", "Qwen/Qwen3-8B", "--num-shard", "2"],
    ):
        decision = decide(pod(argv), POLICY)
        assert decision.action == "unchanged" and "GPUs" in decision.message, argv


def test_reading_a_container_is_robust_to_odd_shapes():
    for container in (
        {"command": "vllm serve x"},
        {"args": [1, 2]},
        {"command": ["sh", "-c", "vllm serve 'unbalanced"]},
        {"command": ["vllm"]},
        {"env": "x"},
        {"command": ["sh", "-c"]},
    ):
        read_container(container, "container")


# --- args and the equivalent annotations give the same decision -------------------------

MODELS = [
    "meta-llama/Llama-3.1-8B-Instruct",
    "Qwen/Qwen3-8B",
    "google/gemma-3-1b-it",
    "microsoft/phi-4",
    "Qwen/Qwen2.5-7B-Instruct",
    "openai/gpt-oss-20b",
    "Qwen/Qwen2.5-14B-Instruct-AWQ",
]


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    context=st.integers(min_value=1, max_value=131072),
    utilization=st.sampled_from([None, "0.5", "0.85", "0.9", "0.95"]),
    kv=st.sampled_from([None, "auto", "fp8", "fp8_e5m2"]),
    quant=st.sampled_from([None, "fp8", "awq"]),
    batched=st.sampled_from([None, 2048, 16384]),
)
def test_args_and_equivalent_annotations_decide_alike(model, context, utilization, kv, quant, batched):
    argv = ["vllm", "serve", model, "--max-model-len", str(context)]
    annotations = {ann.MODEL: model, ann.CONTEXT_LENGTH: str(context), ann.ENGINE: "vllm"}
    if utilization:
        argv += ["--gpu-memory-utilization", utilization]
        annotations[ann.GPU_MEMORY_UTILIZATION] = utilization
    if kv:
        argv += [f"--kv-cache-dtype={kv}"]
        annotations[ann.KV_CACHE_DTYPE] = kv
    if batched:
        argv += ["--max-num-batched-tokens", str(batched)]
        annotations[ann.MAX_BATCHED_TOKENS] = str(batched)
    if quant:
        argv += ["--quantization", quant]
    implied = {"Qwen/Qwen2.5-14B-Instruct-AWQ": "int4"}.get(model)
    if quant == "fp8":
        annotations[ann.PRECISION] = "fp8"
    elif quant == "awq" or implied:
        annotations[ann.PRECISION] = "int4"
    elif model != "openai/gpt-oss-20b":
        annotations[ann.PRECISION] = "bf16"
    by_args = decide(pod(argv), POLICY)
    by_annotations = decide(pod(None, None, image="busybox", annotations=annotations), POLICY)
    assert by_args.action == by_annotations.action
    assert by_args.need == by_annotations.need
    assert by_args.profile == by_annotations.profile
