"""What every user of the command line can count on: --version, help for every option,
whole manifests through `mutate`, clear errors, and no traceback when the reader goes away."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from webhook.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args], capture_output=True, text=True, input=stdin, timeout=120, cwd=ROOT
    )


def test_version():
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("gpu-rightsizer ") and done.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize("name", sorted(cli_main.COMMANDS))
def test_every_option_of_every_command_has_help(name):
    _, parsers = cli_main.build_parser()
    cli_main._import_command(name).add_arguments(parsers[name])

    def walk(parser: argparse.ArgumentParser, where: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(sub, f"{where} {sub_name}")
            elif not isinstance(action, argparse._HelpAction):
                yield where, action

    missing = [
        f"{where} {'/'.join(a.option_strings) or a.dest}" for where, a in walk(parsers[name], name) if not a.help
    ]
    assert missing == []


MANIFEST = """\
apiVersion: v1
kind: Service
metadata: {name: llm}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: llm}
spec:
  selector: {matchLabels: {app: llm}}
  template:
    metadata:
      labels: {app: llm}
      annotations: {gpu-rightsizer.io/model-size: 7b}
    spec:
      containers:
        - name: server
          image: vllm/vllm-openai
          resources: {limits: {nvidia.com/gpu: 1}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
"""


def test_mutate_passes_other_kinds_through_a_whole_manifest():
    done = cli("mutate", "-", stdin=MANIFEST)
    assert done.returncode == 0, done.stderr
    service, deployment, config = yaml.safe_load_all(done.stdout)
    original = list(yaml.safe_load_all(MANIFEST))
    assert service == original[0] and config == original[2]
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert list(limits) == ["nvidia.com/mig-2g.20gb"] or all(k.startswith("nvidia.com/mig-") for k in limits)
    assert "Service: passed through unchanged" in done.stderr


def test_mutate_exits_1_when_any_pod_of_a_manifest_is_refused():
    refused = MANIFEST.replace("model-size: 7b", "model-size: lots")
    done = cli("mutate", "-", stdin=refused)
    assert done.returncode == 1
    assert "refused" in done.stderr and "gpu-rightsizer.io/model-size" in done.stderr
    assert len(list(yaml.safe_load_all(done.stdout))) == 2  # the other objects still come out


@pytest.mark.parametrize("text", ["", "\n", "---\n---\n"])
def test_an_empty_input_is_an_error(text, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    done = cli("mutate", str(path))
    assert done.returncode == 2 and "holds no objects" in done.stderr and done.stdout == ""


def test_a_closed_pipe_ends_quietly():
    shell = f"{sys.executable} -m webhook.cli catalog | head -n 1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_plan_exits_1_when_a_workload_is_refused_and_counts_workloads_and_pods(tmp_path):
    refused = MANIFEST.replace("model-size: 7b", "model-size: lots")
    path = tmp_path / "m.yaml"
    path.write_text(refused + "---\n" + MANIFEST.split("---\n")[1].replace("name: llm", "name: ok"))
    done = cli("plan", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Deployment/llm" in done.stderr and "not planned: deny" in done.stderr
    assert "workloads: 4 (deny: 1, invalid: 2, rewrite: 1); pods needing GPUs: 1" in done.stdout


def test_plan_of_a_manifest_with_services_alone_is_not_a_failure(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST)
    assert cli("plan", str(path)).returncode == 0
