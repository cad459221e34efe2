"""`gpu-rightsizer catalog [GPU_MODEL]`: the built-in MIG profiles."""

from __future__ import annotations

import sys

from webhook.core.catalog import builtin_catalog


def add_arguments(parser) -> None:
    parser.add_argument("model", nargs="?", help="catalog key or GPU feature discovery product name")
    parser.add_argument("--sources", action="store_true", help="print each model's source")


def run(args) -> int:
    catalog = builtin_catalog()
    if args.model:
        model = catalog.lookup(args.model)
        if model is None:
            print(
                f"gpu-rightsizer: unknown GPU model {args.model!r}; known: {', '.join(catalog.keys)}", file=sys.stderr
            )
            return 2
        models = [model]
    else:
        models = list(catalog.models.values())
    for model in models:
        print(f"{model.key}  (aliases: {', '.join(model.aliases) or '-'})")
        if args.sources or args.model:
            print(f"  source: {model.source}")
        print(f"  {'profile':<16}{'memory GiB':>11}{'MiB':>8}{'slices':>8}{'max/GPU':>9}  placements")
        for p in model.profiles:
            starts = ",".join(map(str, p.placement_starts))
            default = "" if not p.is_media_extension else "  (not picked by default)"
            print(
                f"  {p.name:<16}{p.memory_gib:>11.2f}{p.memory_mib:>8}{p.compute_slices:>8}"
                f"{p.max_instances:>9}  {{{starts}}}:{p.placement_size}{default}"
            )
        print()
    return 0
