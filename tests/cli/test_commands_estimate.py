"""`gpu-rightsizer estimate`: the webhook's own arithmetic, through the real CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from webhook.cli.main import main
from webhook.core import annotations as ann
from webhook.core.catalog import builtin_catalog
from webhook.core.decision import decide

ISSUE = ["--model", "llama-3.1-8b", "--precision", "bf16", "--context-length", "8k", "--max-concurrency", "4"]


def test_prints_the_issue_arithmetic_and_the_decision(capsys):
    assert main(["estimate", *ISSUE]) == 0
    out = capsys.readouterr().out
    assert "need: weights 14.96 GiB + KV 4.00 GiB (8192 x 4) + 2.25 GiB -> 21.2 GiB\n" in out
    assert "-> nvidia.com/mig-3g.40gb on pool h100-80" in out
    assert "<= 0.9 x 39.25 GiB of 3g.40gb" in out


def test_table_has_a_row_per_catalog_gpu_agreeing_with_decide(capsys):
    assert main(["estimate", *ISSUE]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1] for line in lines[lines.index("") + 2 :] if line.strip()}
    assert set(rows) == set(builtin_catalog().keys)
    assert rows["H100-80GB"] == "3g.40gb"
    assert rows["A30-24GB"] == "whole"  # 0.9 x 23.44 GiB < 21.2 GiB
    # The same answer as the webhook's decision for a pool of that GPU.
    from webhook.core.policy import parse_policy_yaml

    annotations = {ann.MODEL: "llama-3.1-8b", ann.PRECISION: "bf16", ann.CONTEXT_LENGTH: "8k", ann.MAX_CONCURRENCY: "4"}
    pod = {
        "metadata": {"annotations": annotations},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }
    for key, profile in rows.items():
        decision = decide(pod, parse_policy_yaml(f"pools: [{{name: p, gpuModel: {key}}}]\n"))
        assert (decision.profile.name if decision.action == "rewrite" else "whole") == profile, key


def test_core_estimate_without_context(capsys):
    assert main(["estimate", "--model-size", "7b"]) == 0
    assert "need: 7B params x 2 B (fp16) x 1.2 = 15.65 GiB" in capsys.readouterr().out


def test_policy_flag_changes_the_constants(tmp_path, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "pools: [{name: h, gpuModel: H100-80GB}]\nestimate: {activationMiB: 512, runtimeOverheadMiB: 512}\n"
    )
    assert main(["estimate", *ISSUE, "--policy", str(path)]) == 0
    assert "+ 1.00 GiB -> 20.0 GiB" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--model", "llama-3.1-8b", "--context-length", "lots"], 'context-length="lots" is invalid'),
        (["--model", "gpt-9"], 'model="gpt-9" is invalid'),
        (["--context-length", "8k"], "give --model, --model-size or --gpu-memory"),
    ],
)
def test_invalid_input_exits_2_with_the_webhook_message(args, fragment, capsys):
    assert main(["estimate", *args]) == 2
    assert fragment in capsys.readouterr().err


def test_list_models(capsys):
    assert main(["estimate", "--list-models"]) == 0
    out = capsys.readouterr().out
    assert "gemma-2-9b" in out and "google/gemma-2-9b/config.json" in out


def test_installed_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "estimate", *ISSUE], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "KV 4.00 GiB (8192 x 4)" in result.stdout
