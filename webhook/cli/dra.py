"""`gpu-rightsizer dra deviceclasses`: the DeviceClasses that let a Dynamic Resource
Allocation cluster serve the webhook's `nvidia.com/mig-<profile>` requests from the MIG
devices NVIDIA's DRA driver publishes (webhook/core/dra.py says what that relies on)."""

from __future__ import annotations

import sys

import yaml

from webhook.cli.common import add_policy_argument, policy_or_exit
from webhook.core import dra


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="dra_command", required=True, metavar="SUBCOMMAND")
    classes = sub.add_parser(
        "deviceclasses",
        help="print one DeviceClass per MIG profile the policy's pools offer (YAML)",
        description="Print one resource.k8s.io/v1 DeviceClass per MIG profile the policy's mixed-strategy "
        "pools offer: each maps nvidia.com/mig-<profile> (KEP-5004 extendedResourceName) onto the DRA "
        "driver's MIG devices of that profile.",
    )
    add_policy_argument(classes)
    classes.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="NAME",
        help="only the profiles of this pool (repeat for several; default: every mixed-strategy pool)",
    )
    classes.add_argument(
        "--driver",
        default=dra.DRIVER,
        help=f"the DRA driver name whose devices the classes select (default: {dra.DRIVER})",
    )


def render(classes: list[dict]) -> str:
    """The YAML the command prints (also what manifests/optional/dra holds)."""
    header = (
        "# gpu-rightsizer dra deviceclasses: one DeviceClass per MIG profile; each maps the extended\n"
        "# resource nvidia.com/mig-<profile> (KEP-5004) onto the DRA driver's MIG devices of that profile.\n"
    )
    return header + yaml.safe_dump_all(classes, sort_keys=False, width=1000)


def run(args) -> int:
    policy = policy_or_exit(args.policy)
    try:
        classes = dra.device_classes(policy, args.pool, args.driver)
    except KeyError as err:
        known = ", ".join(p.name for p in policy.pools)
        print(f"gpu-rightsizer dra: no pool named {err.args[0]} in the policy; pools: {known}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"gpu-rightsizer dra: {err}", file=sys.stderr)
        return 2
    if not classes:
        print("gpu-rightsizer dra: the chosen pools offer no MIG profile on the mixed strategy", file=sys.stderr)
        return 1
    print(render(classes), end="")
    return 0
