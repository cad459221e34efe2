"""The names of outcomes: one ``Literal`` type for each set, so the decision, the answer,
the metrics and the log line spell them the same way (and mypy holds them to it).
"""

from __future__ import annotations

from typing import Literal, get_args

# What the decision does with a pod (Decision.action).
Action = Literal["ignore", "unchanged", "deny", "rewrite", "whole-gpu"]

# What a pod create is answered (Answer.result, Outcome.result): patched, allowed as it
# came, refused, or not ours to size (no GPU, skipped, not a pod create).
AnswerResult = Literal["mutated", "unchanged", "denied", "ignored"]

# The outcome label of gpu_rightsizer_admissions_total and the log line's "result": the
# answer's result with "ignored" counted as "unchanged", and "error" for an admission
# that raised (the pod was admitted unchanged).
RecordedResult = Literal["mutated", "unchanged", "denied", "error"]
RECORDED_RESULTS: tuple[RecordedResult, ...] = get_args(RecordedResult)

# The metrics' and log line's action: the decision's, or "none" when there was none.
RecordedAction = Literal[Action, "none"]

# How the decision memo answered: from memory, computed, or not asked (the pod was too
# large to key); "" when no memo was used at all.
MemoResult = Literal["hit", "miss", "skipped", ""]

# What the planner made of a workload (planning.demand.Workload.action): the decision's
# action, or "invalid" (it cannot be planned) or "assigned" (a live pod already holds its slice).
PlanAction = Literal[Action, "invalid", "assigned"]
