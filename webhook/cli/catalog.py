"""`gpu-rightsizer catalog [GPU_MODEL]`: the built-in MIG profiles; `--from-cluster`: the
profiles and memory a cluster's GPUs report, and where they differ from the built-in ones."""

from __future__ import annotations

import sys

from webhook.core.catalog import builtin_catalog


def add_arguments(parser) -> None:
    parser.add_argument("model", nargs="?", help="catalog key or GPU feature discovery product name")
    parser.add_argument("--sources", action="store_true", help="print each model's source")
    parser.add_argument(
        "--from-cluster",
        action="store_true",
        help="list the MIG profiles and memory the cluster reports (DRA ResourceSlices of gpu.nvidia.com, "
        "else node labels and allocatable) and where they differ from the built-in catalog",
    )
    parser.add_argument(
        "--kubeconfig",
        help="kubeconfig file for --from-cluster (default: in-cluster, else $KUBECONFIG or ~/.kube/config)",
    )


def _read_cluster(kubeconfig: str | None) -> tuple[list[dict], list[dict], str | None]:
    """ResourceSlices (none, with the reason, where the API does not serve them) and nodes."""
    from webhook.cli.common import cluster_client
    from webhook.planning.live import list_items

    api = cluster_client(kubeconfig)
    try:
        slices: list[dict] = []
        note = None
        try:
            slices = list_items(api, "resource.k8s.io/v1", "ResourceSlice")
        except Exception as err:  # noqa: BLE001 - no DRA API (older cluster) or no access: say so, read nodes
            note = f"ResourceSlices not read ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        return slices, list_items(api, "v1", "Node"), note
    finally:
        api.close()


def run_from_cluster(kubeconfig: str | None) -> int:
    from webhook.core import dra

    try:
        slices, nodes, note = _read_cluster(kubeconfig)
    except Exception as err:  # noqa: BLE001 - the kubernetes client's many errors: name them
        if not type(err).__module__.startswith(("kubernetes", "urllib3")) and not isinstance(err, OSError):
            raise
        print(
            f"gpu-rightsizer catalog: cannot read the cluster: {type(err).__name__}: {str(err)[:300]}", file=sys.stderr
        )
        return 2
    if note:
        print(f"# {note}")
    seen = dra.profiles_from_slices(slices) + dra.profiles_from_nodes(nodes)
    if not seen:
        print(
            "gpu-rightsizer catalog: the cluster reports no MIG device (no ResourceSlice of gpu.nvidia.com, "
            "no node with nvidia.com/mig-* allocatable)",
            file=sys.stderr,
        )
        return 1
    catalog = builtin_catalog()
    print(f"{'product':<36}{'profile':<16}{'memory MiB':>11}{'catalog MiB':>12}{'count':>7}  source")
    for item in seen:
        model = catalog.lookup(item.product)
        profile = model.profile(item.profile) if model else None
        memory = "-" if item.memory_mib is None else str(item.memory_mib)
        known = "-" if profile is None else str(profile.memory_mib)
        print(f"{item.product:<36}{item.profile:<16}{memory:>11}{known:>12}{item.count:>7}  {item.source}")
    differences = dra.compare_with_catalog(seen, catalog)
    print()
    if not differences:
        print("Every profile and memory reported matches the built-in catalog.")
    for diff in differences:
        print(f"differs: {diff.product} {diff.profile}: {diff.what}")
    return 0


def run(args) -> int:
    if args.from_cluster:
        if args.model or args.sources:
            print("gpu-rightsizer catalog: --from-cluster takes no GPU_MODEL or --sources", file=sys.stderr)
            return 2
        return run_from_cluster(args.kubeconfig)
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
