"""Part 3: pod-create latency through a real kube-apiserver, by webhook path.

    .venv/bin/python -m bench.bench_apiserver [--creates 1000]

One control plane (tests/e2e/controlplane.py; binaries from
tests/e2e/build-control-plane.sh), four namespaces, each served by:
  (a) no webhook;
  (b) gpu-rightsizer (`gpu-rightsizer serve`, the shipped config, 2 workers): the same
      pod each time, as a Deployment's replicas come (answered from webhook/admission/memo.py);
  (b') the same server, each pod made distinct by a label: every decision made afresh;
  (c) an allow-all Flask endpoint on the same gunicorn stack (bench/floor_app.py);
  (d) an allow-all Go net/http endpoint (bench/goallow, built now with the machine's Go);
  (e) the same Go endpoint answering with our patch and warnings for this pod (computed
      by webhook.admission.admit.admit from a server-side dry run): (e) - (d) is what applying
      our mutation costs the API server, (b) - (e) what our server costs beyond Go's;
  (f) our app on gunicorn's sync worker, which closes every connection: (f) - (b) is
      what keep-alive saves each pod create, measured with the API server's own client.
(b)-(d) are registered with the project's own MutatingWebhookConfiguration
(manifests/base: same matchConditions, timeout, reinvocationPolicy), each selecting its
namespace. The same GPU pod (model-size 7b) is created over one keep-alive connection,
the paths interleaved create by create so that machine noise hits all alike; pods name
a scheduler that does not exist, so the scheduler stays idle. Reported: p50/p99 per
path, each path's added latency over (a), ours as ratios to (c) and (d), and how many
times the API server called us per pod create (from our /metrics), and the stored
pod's priority fields (the reason one call suffices).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench import servers
from bench.stats import machine, md_table, summary, write_result

ROOT = Path(__file__).resolve().parent.parent
E2E = ROOT / "tests" / "e2e"
PATHS = ("none", "ours", "ours-distinct", "flask", "go", "replay", "ours-sync")
LABELS = {
    "none": "(a) no webhook",
    "ours": "(b) gpu-rightsizer",
    "ours-distinct": "(b') gpu-rightsizer, every pod distinct (decided afresh, no memo hit)",
    "flask": "(c) allow-all Flask (our stack)",
    "go": "(d) allow-all Go net/http",
    "replay": "(e) Go net/http replaying our patch",
    "ours-sync": "(f) gpu-rightsizer on gunicorn's sync worker (a TLS handshake per call)",
}
SCHEDULER = "bench-no-scheduler"


def control_plane_bins() -> Path:
    out = subprocess.run(["bash", str(E2E / "build-control-plane.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench: building the control plane failed:\n{out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def gpu_pod() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "bench-", "annotations": {"gpu-rightsizer.io/model-size": "7b"}},
        "spec": {
            "schedulerName": SCHEDULER,
            "containers": [
                {
                    "name": "server",
                    "image": "vllm/vllm-openai:v0.6.0",
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}},
                }
            ],
        },
    }


def webhook_configuration(path: str, namespace: str, url: str, ca_bundle: str) -> dict:
    config = yaml.safe_load((ROOT / "manifests" / "base" / "mutatingwebhookconfiguration.yaml").read_text())
    config["metadata"]["name"] = f"bench-{path}"
    for webhook in config["webhooks"]:
        webhook["name"] = f"{path}.bench.gpu-rightsizer.io"
        webhook["clientConfig"] = {"url": url, "caBundle": ca_bundle}
        webhook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return config


class ApiClient:
    """Pod creates over one keep-alive HTTPS connection, as admin."""

    def __init__(self, server: str, ca_file: Path, token: str):
        host, port = server.removeprefix("https://").rsplit(":", 1)
        self.conn = http.client.HTTPSConnection(
            host, int(port), context=ssl.create_default_context(cafile=str(ca_file))
        )
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def create_pod(self, namespace: str, body: bytes) -> tuple[float, dict]:
        started = time.perf_counter()
        self.conn.request("POST", f"/api/v1/namespaces/{namespace}/pods", body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 201:
            raise RuntimeError(f"pod create in {namespace} got HTTP {response.status}: {data[:500]!r}")
        return elapsed, json.loads(data)


def our_response_fields(client: ApiClient, namespace: str, body: bytes, workdir: Path) -> Path:
    """Our answer's patch and warnings for the pod as a webhook would see it, from a
    server-side dry run in a namespace no webhook serves."""
    client.conn.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", body, client.headers)
    response = client.conn.getresponse()
    pod = json.loads(response.read())
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "replay",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "namespace": namespace,
            "object": pod,
        },
    }
    path = servers.our_response_file(review, workdir)
    if "patch" not in json.loads(path.read_text()):
        raise SystemExit(f"bench: expected a patch for the benchmark pod, got {path.read_text()}")
    return path


def distinct_body(i: int) -> bytes:
    pod = gpu_pod()
    pod["metadata"]["labels"] = {"bench/variant": str(i)}
    return json.dumps(pod).encode()


def our_admissions(port: int, ca: str) -> int:
    # Each worker folds its counts into /metrics within FLUSH_SECONDS: wait that out.
    from webhook.serving.metrics import FLUSH_SECONDS

    time.sleep(2.5 * FLUSH_SECONDS)
    ctx = ssl.create_default_context(cafile=ca)
    import urllib.request

    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx, timeout=5) as r:
        text = r.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gpu_rightsizer_admissions_total{")
        )
    )


def go_calls(port: int, ca: str) -> int:
    ctx = ssl.create_default_context(cafile=ca)
    import urllib.request

    with urllib.request.urlopen(f"https://127.0.0.1:{port}/calls", context=ctx, timeout=5) as r:
        return json.load(r)["calls"]


def run(creates: int = 1000, warmup: int = 20) -> dict:
    from tests.e2e.controlplane import ControlPlane

    bins = control_plane_bins()
    body = json.dumps(gpu_pod()).encode()
    with tempfile.TemporaryDirectory(prefix="gpu-rightsizer-bench-api-") as tmp:
        workdir = Path(tmp)
        certs = servers.make_certs(workdir)
        ca_bundle = base64.b64encode(Path(certs.ca).read_bytes()).decode()
        go_binary = servers.build_go_allow(workdir)
        ours = servers.project_server(certs, workdir, workers=2)
        flask = servers.bench_server("floor", certs, workdir, workers=2)
        go = servers.go_server(go_binary, certs, workdir)
        ours_sync = servers.bench_server("project", certs, workdir, workers=2, worker_class="sync")
        with ControlPlane(bins) as cp, ours, flask, go, ours_sync:
            cp.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "priorityclasses.yaml"))
            namespaces = {p: f"bench-{p}" for p in PATHS}
            for ns in namespaces.values():
                cp.create_namespace(ns)
            ports = {
                "ours": ours.port,
                "ours-distinct": ours.port,
                "flask": flask.port,
                "go": go.port,
                "ours-sync": ours_sync.port,
            }
            for path, port in ports.items():
                cp.apply(webhook_configuration(path, namespaces[path], f"https://127.0.0.1:{port}/mutate", ca_bundle))
            client = ApiClient(cp.server, cp.ca_file, cp.token)
            replay = servers.go_server(
                go_binary, certs, workdir, response_file=our_response_fields(client, namespaces["none"], body, workdir)
            )
            replay.start()
            cp.apply(
                webhook_configuration(
                    "replay", namespaces["replay"], f"https://127.0.0.1:{replay.port}/mutate", ca_bundle
                )
            )

            # The API server picks new webhook configurations up asynchronously: create
            # until ours and Go's are called, then warm every path up.
            deadline = time.monotonic() + 60
            while (
                our_admissions(ours.port, certs.ca) == 0
                or go_calls(go.port, certs.ca) == 0
                or go_calls(replay.port, certs.ca) == 0
            ):
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the API server never called the webhooks")
                for path in ("ours", "go", "replay"):
                    client.create_pod(namespaces[path], body)
                time.sleep(0.2)
            variants = iter(range(10**9))
            bodies = {
                p: (lambda: distinct_body(next(variants))) if p == "ours-distinct" else (lambda: body) for p in PATHS
            }
            for _ in range(warmup):
                for path in PATHS:
                    client.create_pod(namespaces[path], bodies[path]())

            latencies = {p: [] for p in PATHS}
            before_ours = our_admissions(ours.port, certs.ca)
            before_go = go_calls(go.port, certs.ca)
            stored = None
            for i in range(creates):
                order = PATHS[i % len(PATHS) :] + PATHS[: i % len(PATHS)]
                for path in order:
                    elapsed, pod = client.create_pod(namespaces[path], bodies[path]())
                    latencies[path].append(elapsed)
                    if path == "ours" and stored is None:
                        stored = pod
            calls_ours = our_admissions(ours.port, certs.ca) - before_ours
            calls_go = go_calls(go.port, certs.ca) - before_go
            api_version = cp.kubectl("version", "-o", "json").stdout
            replay.stop()

    stats = {p: summary(v) for p, v in latencies.items()}
    base = stats["none"]
    added = {p: {"p50": stats[p]["p50"] - base["p50"], "p99": stats[p]["p99"] - base["p99"]} for p in PATHS}
    spec = stored["spec"]
    data = {
        "machine": machine(),
        "kube_apiserver": json.loads(api_version).get("serverVersion", {}).get("gitVersion"),
        "creates_per_path": creates,
        "latency_ms": stats,
        "added_over_none_ms": added,
        "ours_added_p50_over_go_added_p50": added["ours"]["p50"] / added["go"]["p50"]
        if added["go"]["p50"] > 0
        else None,
        "ours_added_p50_over_flask_added_p50": added["ours"]["p50"] / added["flask"]["p50"]
        if added["flask"]["p50"] > 0
        else None,
        "ours_p99_over_flask_p99": stats["ours"]["p99"] / stats["flask"]["p99"],
        "ours_p50_over_go_p50": stats["ours"]["p50"] / stats["go"]["p50"],
        "ours_distinct_added_p50_over_go_added_p50": (
            added["ours-distinct"]["p50"] / added["go"]["p50"] if added["go"]["p50"] > 0 else None
        ),
        "ours_distinct_p99_over_flask_p99": stats["ours-distinct"]["p99"] / stats["flask"]["p99"],
        "apiserver_cost_of_our_patch_p50_ms": stats["replay"]["p50"] - stats["go"]["p50"],
        "our_server_cost_over_go_p50_ms": stats["ours"]["p50"] - stats["replay"]["p50"],
        "keepalive_saves_p50_ms": stats["ours-sync"]["p50"] - stats["ours"]["p50"],
        "keepalive_saves_p99_ms": stats["ours-sync"]["p99"] - stats["ours"]["p99"],
        # ours serves (b) and (b'): two creates per round.
        "calls_per_create": {"ours": calls_ours / (2 * creates), "go": calls_go / creates},
        "stored_pod": {
            "priorityClassName": spec.get("priorityClassName"),
            "priority": spec.get("priority"),
            "preemptionPolicy": spec.get("preemptionPolicy"),
            "assigned_profile": stored["metadata"].get("annotations", {}).get("gpu-rightsizer.io/assigned-profile"),
            "limits": spec["containers"][0]["resources"]["limits"],
        },
    }
    data["targets"] = {
        "added_p50_vs_go_max": 1.5,
        "added_p50_vs_go_met": data["ours_added_p50_over_go_added_p50"] is not None
        and data["ours_added_p50_over_go_added_p50"] <= 1.5,
        "p99_vs_flask_met": data["ours_p99_over_flask_p99"] <= 1.0,
        "one_call_per_create": data["calls_per_create"]["ours"] == 1.0,
    }
    rows = [
        [
            LABELS[p],
            stats[p]["p50"],
            stats[p]["p90"],
            stats[p]["p99"],
            stats[p]["max"],
            added[p]["p50"],
            added[p]["p99"],
        ]
        for p in PATHS
    ]
    r = data
    md = (
        "## Pod create through kube-apiserver "
        + str(data["kube_apiserver"])
        + "\n\n"
        + f"{creates} creates per path, interleaved, one keep-alive client connection; webhooks on loopback "
        f"(ours and Flask: 2 gunicorn gthread workers); {data['machine']['cpus']} cores shared with etcd, "
        f"the API server and the controllers; loadavg at start {data['machine']['loadavg_at_start']}.\n\n"
        + md_table(["path", "p50 ms", "p90 ms", "p99 ms", "max ms", "added p50 ms", "added p99 ms"], rows)
        + f"\n- ours added p50 / Go added p50: {r['ours_added_p50_over_go_added_p50']:.2f} (target <= 1.5: "
        f"{'met' if r['targets']['added_p50_vs_go_met'] else 'NOT met'}); / Flask added p50: "
        f"{r['ours_added_p50_over_flask_added_p50']:.2f}\n"
        f"- ours p99 / Flask p99: {r['ours_p99_over_flask_p99']:.2f} (target <= 1: "
        f"{'met' if r['targets']['p99_vs_flask_met'] else 'NOT met'})\n"
        f"- every pod distinct (b'): added p50 / Go added p50 {r['ours_distinct_added_p50_over_go_added_p50']:.2f}, "
        f"p99 / Flask p99 {r['ours_distinct_p99_over_flask_p99']:.2f}\n"
        f"- of ours' added p50: applying our patch costs the API server {r['apiserver_cost_of_our_patch_p50_ms']:.2f} ms "
        f"((e) - (d)); our server beyond Go's {r['our_server_cost_over_go_p50_ms']:.2f} ms ((b) - (e))\n"
        f"- keep-alive (gthread) saves {r['keepalive_saves_p50_ms']:.2f} ms p50, {r['keepalive_saves_p99_ms']:.2f} ms p99 "
        f"per pod create over the sync worker ((f) - (b))\n"
        f"- API server calls per pod create: ours {r['calls_per_create']['ours']:.3f}, Go allow-all "
        f"{r['calls_per_create']['go']:.3f} (target: exactly 1)\n"
        f"- stored pod: {r['stored_pod']}\n"
    )
    write_result("apiserver", data, md)
    return data | {"markdown": md}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--creates", type=int, default=1000, help="pod creates per path (p99 is then the 10th slowest of each path)"
    )
    args = parser.parse_args()
    print(run(args.creates)["markdown"])


if __name__ == "__main__":
    main()
