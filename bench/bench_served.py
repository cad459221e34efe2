"""Part 2: gpu-rightsizer served over HTTPS, against an allow-all floor on the same stack.

    .venv/bin/python -m bench.bench_served [--workers 1 2 4] [--rounds 5] [--quick]

All in one run, on this machine, with the load generator (bench/loadgen.py) in this
process:
1. the generator's own capacity, against the Go net/http allow-all endpoint (a lower
   bound: that server shares the cores with it);
2. keep-alive vs a connection per request: the floor and our app under gunicorn's sync
   worker (closes every connection, so each request pays a TLS handshake) and gthread;
3. gthread threads per worker (1, 2, 4, 8) for our app;
4. the answer's size: the floor, the floor sending our recorded patch and warnings with
   every answer, and our app, in alternated rounds (is the gap what we send, or what we
   do?);
5. for each worker count: `gpu-rightsizer serve` (the shipped config) and the floor
   (bench/floor_app.py, same gunicorn config) alternately, in short paired rounds:
   saturation throughput (closed loop) and latency at fixed offered rates (open loop,
   measured from each request's due time), including half the floor's saturation rate.
The machine is shared and noisy, so the figures that matter are the per-round
project/floor ratios and their medians, not any one absolute figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench import loadgen, servers
from bench.corpus import body_of, corpus, distinct_bodies
from bench.stats import RESULTS, machine, md_table, write_result

HOST = "127.0.0.1"
THROUGHPUT_TARGET = 0.9
P99_TARGET = 1.15


def _sat(server, certs, body, seconds, conns):
    cpu = server.cpu_seconds()
    result = loadgen.closed_loop(HOST, server.port, certs.ca, body, seconds, conns)
    result["server_cpu_us_per_request"] = (server.cpu_seconds() - cpu) * 1e6 / max(1, result["completed"])
    return result


def _open(server, certs, body, rate, seconds, conns):
    return loadgen.open_loop(HOST, server.port, certs.ca, body, rate, seconds, conns)


def paired(a, b, measure, rounds: int) -> list[tuple[dict, dict]]:
    """``rounds`` measurements of a and b, alternating which goes first."""
    out = []
    for r in range(rounds):
        if r % 2 == 0:
            ra = measure(a)
            rb = measure(b)
        else:
            rb = measure(b)
            ra = measure(a)
        out.append((ra, rb))
    return out


def _median(values):
    return statistics.median(values) if values else float("nan")


def generator_capacity(go_binary, certs, workdir, body, seconds, conns) -> dict:
    with servers.go_server(go_binary, certs, workdir) as go:
        runs = [_sat(go, certs, body, seconds, conns) for _ in range(2)]
    best = max(runs, key=lambda r: r["rps"])
    return {
        "rps": best["rps"],
        "latency_ms": best["latency_ms"],
        "connections": conns,
        "note": "closed loop against the Go allow-all server on the same 2 cores (a lower bound)",
    }


def keepalive_vs_close(certs, workdir, body, workers, rounds, seconds, conns, rate) -> dict:
    out = {}
    for app in ("floor", "project"):
        gthread = servers.bench_server(app, certs, workdir, workers, "gthread")
        sync = servers.bench_server(app, certs, workdir, workers, "sync")
        with gthread, sync:
            sat = paired(gthread, sync, lambda s: _sat(s, certs, body, seconds, conns), rounds)
            lat = paired(gthread, sync, lambda s: _open(s, certs, body, rate, seconds, conns), rounds)
        out[app] = {
            "gthread_rps": _median([a["rps"] for a, _ in sat]),
            "sync_rps": _median([b["rps"] for _, b in sat]),
            "sync_over_gthread_rps": _median([b["rps"] / a["rps"] for a, b in sat]),
            "gthread_cpu_us_per_request": _median([a["server_cpu_us_per_request"] for a, _ in sat]),
            "sync_cpu_us_per_request": _median([b["server_cpu_us_per_request"] for _, b in sat]),
            "gthread_connects": sat[0][0]["connects"],
            "sync_connects": sat[0][1]["connects"],
            f"gthread_p50_ms_at_{rate}": _median([a["latency_ms"]["p50"] for a, _ in lat]),
            f"sync_p50_ms_at_{rate}": _median([b["latency_ms"]["p50"] for _, b in lat]),
            f"gthread_p99_ms_at_{rate}": _median([a["latency_ms"]["p99"] for a, _ in lat]),
            f"sync_p99_ms_at_{rate}": _median([b["latency_ms"]["p99"] for _, b in lat]),
        }
    return {"workers": workers, "rate": rate, "rounds": rounds, "apps": out}


def threads_sweep(certs, workdir, body, workers, threads_list, rounds, seconds, conns, rate) -> dict:
    started = [
        servers.bench_server("project", certs, workdir, workers, "gthread", threads=t).start() for t in threads_list
    ]
    rows = {t: {"rps": [], "p99": [], "cpu": []} for t in threads_list}
    try:
        for r in range(rounds):
            order = list(zip(threads_list, started))
            if r % 2:
                order.reverse()
            for t, s in order:
                sat = _sat(s, certs, body, seconds, conns)
                rows[t]["rps"].append(sat["rps"])
                rows[t]["cpu"].append(sat["server_cpu_us_per_request"])
                rows[t]["p99"].append(_open(s, certs, body, rate, seconds, conns)["latency_ms"]["p99"])
    finally:
        for s in started:
            s.stop()
    return {
        "workers": workers,
        "rate": rate,
        "rounds": rounds,
        "threads": {
            t: {
                "rps": _median(v["rps"]),
                "cpu_us_per_request": _median(v["cpu"]),
                f"p99_ms_at_{rate}": _median(v["p99"]),
            }
            for t, v in rows.items()
        },
    }


def answer_size(certs, workdir, body, workers, rounds, seconds, conns) -> dict:
    """Saturation of the floor, the floor sending our answer's patch and warnings for
    ``body`` (floor_app --response), and our app, alternated round by round."""
    response_file = servers.our_response_file(json.loads(body), workdir)
    apps = {
        "floor": servers.bench_server("floor", certs, workdir, workers),
        "floor sending our answer": servers.bench_server("floor", certs, workdir, workers, response_file=response_file),
        "gpu-rightsizer": servers.project_server(certs, workdir, workers),
    }
    runs: dict[str, list[dict]] = {name: [] for name in apps}
    for server in apps.values():
        server.start()
    try:
        for r in range(rounds):
            for name in list(apps) if r % 2 == 0 else list(reversed(apps)):
                runs[name].append(_sat(apps[name], certs, body, seconds, conns))
    finally:
        for server in apps.values():
            server.stop()
    floor = runs["floor"]
    return {
        "workers": workers,
        "rounds": rounds,
        "answer_bytes": len(response_file.read_bytes()),
        "apps": {
            name: {
                "rps": _median([x["rps"] for x in v]),
                "cpu_us_per_request": _median([x["server_cpu_us_per_request"] for x in v]),
                "rps_over_floor": _median([x["rps"] / f["rps"] for x, f in zip(v, floor)]),
                "cpu_floor_over_this": _median(
                    [f["server_cpu_us_per_request"] / x["server_cpu_us_per_request"] for x, f in zip(v, floor)]
                ),
            }
            for name, v in runs.items()
        },
    }


def _saturation(project, floor, certs, body, rounds, seconds, conns) -> dict:
    sat = paired(project, floor, lambda s: _sat(s, certs, body, seconds, conns), rounds)
    return {
        "project_rps_rounds": [p["rps"] for p, _ in sat],
        "floor_rps_rounds": [f["rps"] for _, f in sat],
        "ratio_rounds": [p["rps"] / f["rps"] for p, f in sat],
        "project_rps_median": _median([p["rps"] for p, _ in sat]),
        "floor_rps_median": _median([f["rps"] for _, f in sat]),
        "ratio_median": _median([p["rps"] / f["rps"] for p, f in sat]),
        "project_cpu_us_per_request_median": _median([p["server_cpu_us_per_request"] for p, _ in sat]),
        "floor_cpu_us_per_request_median": _median([f["server_cpu_us_per_request"] for _, f in sat]),
        # floor CPU per request / ours: the throughput ratio a CPU-bound server would
        # reach on cores of its own; far steadier than wall-clock rounds here.
        "cpu_ratio_rounds": [f["server_cpu_us_per_request"] / p["server_cpu_us_per_request"] for p, f in sat],
        "cpu_ratio_median": _median([f["server_cpu_us_per_request"] / p["server_cpu_us_per_request"] for p, f in sat]),
        "errors": sum(p["errors"] + f["errors"] for p, f in sat),
    }


def _at_rate(project, floor, certs, body, rate, rounds, seconds, conns) -> dict:
    pairs = paired(project, floor, lambda s: _open(s, certs, body, rate, seconds, conns), rounds)
    return {
        "rounds": rounds,
        "project": pairs[len(pairs) // 2][0] | {"p99_ms_rounds": [p["latency_ms"]["p99"] for p, _ in pairs]},
        "floor": pairs[len(pairs) // 2][1] | {"p99_ms_rounds": [f["latency_ms"]["p99"] for _, f in pairs]},
        "p99_ratio_median": _median([p["latency_ms"]["p99"] / f["latency_ms"]["p99"] for p, f in pairs]),
    }


def compare(certs, workdir, body, workers, rounds, sat_seconds, rate_seconds, rates, conns, distinct=None) -> dict:
    """``body``: the typical pod, the same each time (a controller's replicas: after the
    second, answered from the decision memo). ``distinct``: bodies of pods that never
    repeat, so every one is decided afresh; measured at saturation and half the floor's
    rate."""
    floor = servers.bench_server("floor", certs, workdir, workers)
    project = servers.project_server(certs, workdir, workers)
    with floor, project:
        saturation = _saturation(project, floor, certs, body, rounds, sat_seconds, conns)
        half = max(50, int(saturation["floor_rps_median"] / 2 / 50) * 50)
        at_rates = {}
        for rate in sorted(set(rates) | {half}):
            n = max(3, rounds - 2) if rate == half else 1
            at_rates[rate] = _at_rate(project, floor, certs, body, rate, n, rate_seconds, conns)
        every_pod_new = None
        if distinct:
            sat_new = _saturation(project, floor, certs, distinct, rounds, sat_seconds, conns)
            half_new = _at_rate(project, floor, certs, distinct, half, max(3, rounds - 2), rate_seconds, conns)
            every_pod_new = {
                "pods": len(distinct),
                "saturation": sat_new,
                "half_floor_rate": half,
                "at_half": half_new,
                "targets": {
                    "throughput_met": sat_new["ratio_median"] >= THROUGHPUT_TARGET,
                    "p99_ratio_at_half": half_new["p99_ratio_median"],
                    "p99_met": half_new["p99_ratio_median"] <= P99_TARGET,
                },
            }
    ratio = saturation["ratio_median"]
    return {
        "workers": workers,
        "rounds": rounds,
        "saturation": saturation,
        "half_floor_rate": half,
        "rates": at_rates,
        "targets": {
            "throughput_ratio_min": THROUGHPUT_TARGET,
            "throughput_met": ratio >= THROUGHPUT_TARGET,
            "p99_ratio_at_half_max": P99_TARGET,
            "p99_ratio_at_half": at_rates[half]["p99_ratio_median"],
            "p99_met": at_rates[half]["p99_ratio_median"] <= P99_TARGET,
        },
        "every_pod_new": every_pod_new,
    }


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["compare"]
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        rates = sorted(run["rates"], key=float)
        for who, style in (("project", "-"), ("floor", "--")):
            for q, color in (("p50", "tab:blue"), ("p90", "tab:green"), ("p99", "tab:red")):
                ys = [run["rates"][r][who]["latency_ms"][q] for r in rates]
                ax.plot(
                    [float(r) for r in rates],
                    ys,
                    style,
                    color=color,
                    marker="o",
                    markersize=3,
                    label=f"{'gpu-rightsizer' if who == 'project' else 'allow-all floor'} {q}",
                )
        ax.set_yscale("log")
        ax.set_xlabel("offered load (reviews/s)")
        ax.set_ylabel("latency from due time (ms)")
        ax.set_title(f"{run['workers']} worker(s), gthread, TLS keep-alive")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"gpu-rightsizer vs allow-all floor, {data['machine']['cpus']} cores, generator on the same machine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SATURATION_HEADERS = [
    "workers",
    "ours rps (median)",
    "floor rps (median)",
    "ratio median (rounds)",
    ">= 0.9",
    "ours server CPU us/req",
    "floor server CPU us/req",
    "CPU ratio floor/ours (rounds)",
    "half-floor rate",
    "ours p99 ms",
    "floor p99 ms",
    "p99 ratio (median)",
    "<= 1.15",
]


def _saturation_row(workers: int, s: dict, t: dict, half_rate: int, at_half: dict) -> list:
    """One row of a saturation table: ``s`` from _saturation, ``t`` its targets,
    ``at_half`` the _at_rate result at half the floor's saturation rate."""
    return [
        workers,
        s["project_rps_median"],
        s["floor_rps_median"],
        f"{s['ratio_median']:.2f} ({', '.join(f'{x:.2f}' for x in s['ratio_rounds'])})",
        "met" if t["throughput_met"] else "NOT met",
        s["project_cpu_us_per_request_median"],
        s["floor_cpu_us_per_request_median"],
        f"{s['cpu_ratio_median']:.2f} ({', '.join(f'{x:.2f}' for x in s['cpu_ratio_rounds'])})",
        half_rate,
        at_half["project"]["latency_ms"]["p99"],
        at_half["floor"]["latency_ms"]["p99"],
        f"{t['p99_ratio_at_half']:.2f}",
        "met" if t["p99_met"] else "NOT met",
    ]


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = [
        "## Served over HTTPS (gunicorn + Flask + TLS, keep-alive)\n",
        f"{m['cpus']} cores shared by server and load generator; Python {m['python']}; typical pod "
        f"review ({data['body_bytes']} bytes); {data['connections']} keep-alive connections; loadavg at "
        f"start {m['loadavg_at_start']}. Generator capacity: {data['generator']['rps']:.0f} reviews/s "
        "against the Go allow-all server (closed loop; a lower bound, that server shares the cores).\n",
        "### Saturation throughput (closed loop), paired rounds: the typical pod, the same each time "
        "(a controller's replicas; answered from the decision memo after its second sighting)\n",
    ]
    rows = [
        _saturation_row(
            run["workers"],
            run["saturation"],
            run["targets"],
            run["half_floor_rate"],
            run["rates"][run["half_floor_rate"]],
        )
        for run in data["compare"]
    ]
    lines.append(md_table(SATURATION_HEADERS, rows))
    new_rows = [
        _saturation_row(run["workers"], e["saturation"], e["targets"], e["half_floor_rate"], e["at_half"])
        for run in data["compare"]
        if (e := run.get("every_pod_new"))
    ]
    if new_rows:
        lines.append(
            f"\n### Every pod distinct ({data['compare'][0]['every_pod_new']['pods']} pods in turn, "
            "each decided afresh: no decision-memo hit), paired rounds\n"
        )
        lines.append(md_table(SATURATION_HEADERS, new_rows))
    lines.append("\n### Latency at fixed offered rates (open loop, ms from due time; middle round)\n")
    rows = []
    for run in data["compare"]:
        for rate in sorted(run["rates"], key=float):
            r = run["rates"][rate]
            for who in ("project", "floor"):
                lat = r[who]["latency_ms"]
                rows.append(
                    [
                        run["workers"],
                        rate,
                        "gpu-rightsizer" if who == "project" else "floor",
                        r[who]["rps"],
                        lat["p50"],
                        lat["p90"],
                        lat["p99"],
                        lat["max"],
                        r[who]["errors"],
                        "yes" if r[who]["overloaded"] else "",
                    ]
                )
    lines.append(
        md_table(
            ["workers", "offered rps", "server", "achieved rps", "p50", "p90", "p99", "max", "errors", "overloaded"],
            rows,
        )
    )
    if data.get("keepalive"):
        k = data["keepalive"]
        rate = k["rate"]
        lines.append(
            f"\n### Keep-alive (gthread) vs connection per request (sync worker), {k['workers']} workers, "
            f"median of {k['rounds']} paired rounds\n"
        )
        rows = []
        for app, v in k["apps"].items():
            rows.append(
                [
                    app,
                    v["gthread_rps"],
                    v["sync_rps"],
                    f"{v['sync_over_gthread_rps']:.2f}",
                    v["gthread_cpu_us_per_request"],
                    v["sync_cpu_us_per_request"],
                    v["gthread_connects"],
                    v["sync_connects"],
                    v[f"gthread_p50_ms_at_{rate}"],
                    v[f"sync_p50_ms_at_{rate}"],
                    v[f"gthread_p99_ms_at_{rate}"],
                    v[f"sync_p99_ms_at_{rate}"],
                ]
            )
        lines.append(
            md_table(
                [
                    "app",
                    "gthread rps",
                    "sync rps",
                    "sync/gthread",
                    "server CPU us/req (gthread)",
                    "server CPU us/req (sync)",
                    "TLS connects (gthread)",
                    "TLS connects (sync)",
                    f"gthread p50 @{rate}",
                    f"sync p50 @{rate}",
                    f"gthread p99 @{rate}",
                    f"sync p99 @{rate}",
                ],
                rows,
            )
        )
    if data.get("answer_size"):
        a = data["answer_size"]
        lines.append(
            f"\n### The answer's size: the floor sending our {a['answer_bytes']}-byte answer (patch and "
            f"warnings), {a['workers']} workers, median of {a['rounds']} alternated rounds\n"
        )
        lines.append(
            md_table(
                [
                    "server",
                    "saturation rps",
                    "server CPU us/req",
                    "rps / floor's (rounds' median)",
                    "CPU per request, floor / this",
                ],
                [
                    [
                        name,
                        v["rps"],
                        v["cpu_us_per_request"],
                        f"{v['rps_over_floor']:.2f}",
                        f"{v['cpu_floor_over_this']:.2f}",
                    ]
                    for name, v in a["apps"].items()
                ],
            )
        )
    if data.get("threads"):
        t = data["threads"]
        lines.append(
            f"\n### gthread threads per worker (ours, {t['workers']} workers, median of {t['rounds']} rounds)\n"
        )
        lines.append(
            md_table(
                ["threads", "saturation rps", "server CPU us/req", f"p99 ms @{t['rate']} rps"],
                [[k, v["rps"], v["cpu_us_per_request"], v[f"p99_ms_at_{t['rate']}"]] for k, v in t["threads"].items()],
            )
        )
    return "\n".join(lines) + "\n"


def run(
    workers=(1, 2, 4),
    rounds=9,
    sat_seconds=1.5,
    rate_seconds=3.0,
    rates=(250, 500, 1000, 2000),
    conns=16,
    stack_checks=True,
) -> dict:
    body = body_of(corpus()["single"])
    # More than the memo's window of sightings (webhook/admission/memo.py: 4 x 1024 per worker), so
    # no pod is seen twice in it.
    distinct = distinct_bodies(corpus()["single"], 3 * 4096)
    with tempfile.TemporaryDirectory(prefix="gpu-rightsizer-bench-") as tmp:
        workdir = Path(tmp)
        certs = servers.make_certs(workdir)
        go_binary = servers.build_go_allow(workdir)
        data = {"machine": machine(), "body_bytes": len(body), "connections": conns}
        data["generator"] = generator_capacity(go_binary, certs, workdir, body, sat_seconds, conns)
        print(f"generator capacity: {data['generator']['rps']:.0f} rps", flush=True)
        if stack_checks:
            data["keepalive"] = keepalive_vs_close(certs, workdir, body, 2, 3, sat_seconds, conns, 250)
            print("keep-alive:", data["keepalive"]["apps"], flush=True)
            data["threads"] = threads_sweep(certs, workdir, body, 2, (1, 2, 4, 8), 3, sat_seconds, conns, 500)
            print("threads:", data["threads"]["threads"], flush=True)
            data["answer_size"] = answer_size(certs, workdir, body, 2, 7, sat_seconds, conns)
            print("answer size:", data["answer_size"]["apps"], flush=True)
        data["compare"] = []
        for w in workers:
            result = compare(certs, workdir, body, w, rounds, sat_seconds, rate_seconds, rates, conns, distinct)
            data["compare"].append(result)
            print(
                f"workers={w}: saturation ratio {result['saturation']['ratio_median']:.2f}, "
                f"p99 ratio at {result['half_floor_rate']} rps {result['targets']['p99_ratio_at_half']:.2f}; "
                f"every pod new: {result['every_pod_new']['saturation']['ratio_median']:.2f}, "
                f"p99 ratio {result['every_pod_new']['targets']['p99_ratio_at_half']:.2f}",
                flush=True,
            )
    md = markdown(data)
    write_result("served", data, md)
    plot(data, RESULTS / "served-latency.png")
    return data | {"markdown": md}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--rates", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="short rounds, no stack checks (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        data = run(args.workers, 5, 1.0, 1.5, args.rates, args.connections, stack_checks=False)
    else:
        data = run(args.workers, args.rounds, rates=args.rates, conns=args.connections)
    print(data["markdown"])


if __name__ == "__main__":
    main()
