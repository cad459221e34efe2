"""Pieces the sub-commands share."""

from __future__ import annotations

import sys

from webhook import settings
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy, resolve_policy


def add_policy_argument(parser) -> None:
    parser.add_argument(
        "--policy",
        metavar="PATH",
        help=f"policy YAML (default: ${settings.POLICY}, else the built-in default policy)",
    )


def policy_or_exit(path: str | None) -> Policy:
    try:
        return resolve_policy(path)
    except PolicyError as err:
        print(f"gpu-rightsizer: invalid policy: {err}", file=sys.stderr)
        raise SystemExit(2) from None
