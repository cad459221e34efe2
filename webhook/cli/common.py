"""Pieces the sub-commands share."""

from __future__ import annotations

import sys

from webhook import settings
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy, policy_path, resolve_policy


def add_policy_argument(parser) -> None:
    parser.add_argument(
        "--policy",
        metavar="PATH",
        help=f"policy YAML (default: ${settings.POLICY}, else the built-in default policy)",
    )


def policy_or_exit(path: str | None) -> Policy:
    """The policy in force, or exit 2 with every problem of it, one per line, each naming
    the file (the logs of a reload name it in their own `path` field)."""
    try:
        return resolve_policy(path)
    except PolicyError as err:
        where = policy_path(path) or "built-in policy"
        for line in str(err).splitlines():
            print(f"gpu-rightsizer: invalid policy: {where}: {line}", file=sys.stderr)
        raise SystemExit(2) from None
