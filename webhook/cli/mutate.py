"""`gpu-rightsizer mutate FILE`: what the webhook would do, offline.

Runs the same decision and mutation as the webhook on a Pod, or on the pod template of
a Deployment, StatefulSet, Job, CronJob, ...; prints the mutated objects (or the JSON
Patch) on stdout, the decision and warnings on stderr. Other kinds (a Service, a
ConfigMap) pass through unchanged, so a whole manifest can be piped through it. Exit
status: 0, 1 when a pod was refused (with the message the webhook would give), 2 when
the input cannot be read, holds no pod or workload at all, or a pod is malformed.
"""

from __future__ import annotations

import json
import sys

import yaml

from webhook.admission.answer import pod_patch
from webhook.admission.capacity_answers import CapacityAnswers
from webhook.cli.common import add_capacity_arguments, add_policy_argument, capacity_view_or_exit, policy_or_exit
from webhook.core.errors import BadObject, UnsupportedObject
from webhook.core.mutation import mutate_pod
from webhook.core.patch import escape_pointer_token
from webhook.core.workloads import pod_of, with_pod


def add_arguments(parser) -> None:
    parser.add_argument("file", help="YAML or JSON manifest, one or more documents ('-' for stdin)")
    add_policy_argument(parser)
    parser.add_argument("--patch", action="store_true", help="print the JSON Patch instead of the object")
    parser.add_argument("-o", "--output", choices=("yaml", "json"), help="output format (default: as the input)")
    add_capacity_arguments(parser)


def read_documents(path: str) -> tuple[list, str]:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    fmt = "json" if text.lstrip().startswith(("{", "[")) else "yaml"
    if fmt == "json":
        data = json.loads(text)
        docs = data if isinstance(data, list) else [data]
    else:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    expanded = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            expanded.extend(doc.get("items") or [])
        else:
            expanded.append(doc)
    if not expanded:
        raise ValueError("it holds no objects")
    return expanded, fmt


def run(args) -> int:
    policy = policy_or_exit(args.policy)
    view = capacity_view_or_exit(args.capacity_snapshot, args.kubeconfig)
    if view is not None and not policy.capacity.enabled:
        print("gpu-rightsizer: the policy's capacity.mode is off: the snapshot is not used", file=sys.stderr)
    # One source for all documents, as one webhook worker: each rewrite holds its slice
    # for the next document (a Deployment's replicas are not expanded).
    answers = CapacityAnswers(policy, lambda: view, clock=lambda: view.observed_at) if view is not None else None
    try:
        docs, fmt = read_documents(args.file)
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"gpu-rightsizer: cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    outputs, refused, malformed, passed_through = [], False, False, 0
    for doc in docs:
        try:
            pod, path = pod_of(doc)
        except UnsupportedObject as err:
            # Not a pod or workload: passed through as it came.
            kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
            print(f"gpu-rightsizer: {kind}: passed through unchanged ({err})", file=sys.stderr)
            outputs.append([] if args.patch else doc)
            passed_through += 1
            continue
        try:
            if answers is not None:
                answer = answers.answer(pod, 0)[0]
                if answer.decision is None:
                    raise BadObject("pod", answer.response_fields.get("status", {}).get("message", "malformed"))
                decision, patch = answer.decision, list(answer.patch)
            else:
                decision, patch = pod_patch(pod, policy)
        except BadObject as err:
            print(f"gpu-rightsizer: {err}", file=sys.stderr)
            malformed = True
            continue
        name = (doc.get("metadata") or {}).get("name") or (doc.get("metadata") or {}).get("generateName") or "?"
        label = f"{doc.get('kind')}/{name}"
        if decision.action == "deny":
            print(f"gpu-rightsizer: {label}: refused: {decision.message}", file=sys.stderr)
            refused = True
            continue
        for warning in decision.all_warnings:
            print(f"Warning: gpu-rightsizer: {label}: {warning}", file=sys.stderr)
        if decision.action == "ignore":
            print(f"gpu-rightsizer: {label}: unchanged (no nvidia.com/gpu request, or skipped)", file=sys.stderr)
        if args.patch:
            prefix = "".join("/" + escape_pointer_token(k) for k in path)
            outputs.append([{**op, "path": prefix + op["path"]} for op in patch])
        else:
            outputs.append(with_pod(doc, path, mutate_pod(pod, decision, policy)))
    if passed_through == len(docs):
        print(f"gpu-rightsizer: {args.file} holds no Pod or workload to mutate", file=sys.stderr)
        return 2
    out_fmt = "json" if args.patch else (args.output or fmt)
    if out_fmt == "json":
        body = outputs[0] if len(outputs) == 1 else outputs
        print(json.dumps(body, indent=2))
    elif outputs:
        print(yaml.safe_dump_all(outputs, sort_keys=False, default_flow_style=False), end="")
    return 2 if malformed else 1 if refused else 0
