"""The `gpu-rightsizer` command line: one sub-command per module of webhook.cli."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys

# name -> module; each module has `help`, `add_arguments(parser)` and `run(args) -> int`.
# Modules are imported only when their command runs, so `gpu-rightsizer catalog` does not
# pay for gunicorn or the planner.
COMMANDS = {
    "serve": "webhook.cli.serve",
    "mutate": "webhook.cli.mutate",
    "catalog": "webhook.cli.catalog",
    "estimate": "webhook.cli.estimate",
    "certs": "webhook.cli.certs",
    "plan": "webhook.cli.plan",
    "quota": "webhook.cli.quota",
    "dra": "webhook.cli.dra",
}

HELP = {
    "serve": "run the admission webhook (gunicorn, TLS)",
    "mutate": "show what the webhook would do to a Pod or workload manifest",
    "catalog": "print the built-in MIG profile catalog",
    "estimate": "show the sizing arithmetic for a model and serving settings, and the profile each GPU model gives",
    "certs": "make the webhook's serving certificate and install it in a cluster",
    "plan": "plan MIG layouts for a demand: mig-parted config, node labels, density report",
    "quota": "print the MIG ResourceQuota items that bound a namespace as its nvidia.com/gpu quota meant to",
    "dra": "Dynamic Resource Allocation: DeviceClasses that serve nvidia.com/mig-<profile> from DRA devices",
}


# Third-party modules a command needs from an optional extra of the package.
EXTRAS = {"ortools": "plan", "matplotlib": "plan"}


def _import_command(name: str):
    try:
        return importlib.import_module(COMMANDS[name])
    except ModuleNotFoundError as err:
        extra = EXTRAS.get((err.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"gpu-rightsizer {name} needs the '{extra}' extra ({err.name} is not installed): "
            f"pip install 'gpu-rightsizer[{extra}]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def _version() -> str:
    try:
        return importlib.metadata.version("gpu-rightsizer")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown (not installed)"


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="gpu-rightsizer", description="Right-size whole-GPU Kubernetes pods into NVIDIA MIG slices."
    )
    parser.add_argument("--version", action="version", version=f"gpu-rightsizer {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {}
    for name in COMMANDS:
        parsers[name] = sub.add_parser(name, help=HELP.get(name), description=HELP.get(name))
    return parser, parsers


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, parsers = build_parser()
    # Only the chosen command's module is imported to add its arguments.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen in COMMANDS:
        _import_command(chosen).add_arguments(parsers[chosen])
    args = parser.parse_args(argv)
    module = _import_command(args.command)
    try:
        code = int(module.run(args) or 0)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`gpu-rightsizer estimate ... | head`): stop quietly, as
        # shell tools do, and keep Python from reporting the failed flush at exit
        # (docs.python.org/3/library/signal.html, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
