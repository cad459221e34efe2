"""The capacity watcher (webhook/serving/cluster_watch.py: KubernetesSource + ClusterWatch)
against a real kube-apiserver v1.36.3, and the served webhook reading it.

The module runs a control plane of its own: the relist case restarts its kube-apiserver
(its watch cache then starts at etcd's current revision, so the watcher's last
resourceVersion is really too old: 410 from the server), which a shared plane must not see.
Fake GPU nodes and pods are made with the real kubectl; pods bound with spec.nodeName or
left unbound (a schedulerName no scheduler has), never run. The watcher is wrapped only to
write down what went through it (lists, each watch's resourceVersion, events) and, in the
relist case, to hold one watch until the API server is back.

The cases run in file order and build on one cluster state.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from controlplane import ControlPlane, ManagedProcess, free_port, make_serving_cert, stop_all, wait_for, wait_for_port
from prometheus_client import REGISTRY

from webhook.admission.capacity_answers import CapacityAnswers
from webhook.core.capacity import profile_use
from webhook.core.policy import compile_policy, default_policy_text
from webhook.serving.cluster_watch import POD_FIELD_SELECTOR, ClusterWatch, Expired, KubernetesSource

ROOT = Path(__file__).resolve().parents[2]
NS = "capwatch"
SERVED_NS = "capwatch-served"
A = "gpu-rightsizer.io/"
H100 = "NVIDIA-H100-80GB-HBM3"
# The policies' pool selects only this module's nodes (by this label), so nothing else in
# a cluster changes the figures asserted here.
POOL_LABEL = "e2e.gpu-rightsizer.io/capacity-watch"
NO_SCHEDULER = "capwatch-nobody"  # no scheduler has this name: the pod stays Pending and unbound
TAINT = ("capwatch/maintenance", "yes", "NoSchedule")
WATCH_STALENESS = 12.0  # the watcher's watches last 12 / 3 = 4 s: the server bookmarks 2 s before the end
SERVED_STALENESS = 5.0  # the served webhook's: 1 s watches
WAIT = 20.0  # the bound on waiting for the view to follow a change


def policy_data(pool_value: str, max_staleness: str) -> dict:
    data = yaml.safe_load(default_policy_text())
    pool = data["pools"][0]
    pool["nodeSelector"] = {**pool["nodeSelector"], POOL_LABEL: pool_value}
    data["capacity"] = {"mode": "prefer-free", "maxStaleness": max_staleness}
    return data


POLICY = compile_policy(policy_data("watch", f"{WATCH_STALENESS:g}s"))
POOL = POLICY.pools[0].name


def node_labels(pool_value: str) -> dict:
    return {"nvidia.com/gpu.product": H100, "nvidia.com/mig.capable": "true", POOL_LABEL: pool_value}


def pod(name: str, resource: str | None = None, node: str | None = None, assigned: str | None = None) -> dict:
    container: dict = {"name": "c", "image": "registry.invalid/none"}
    if resource:
        container["resources"] = {"limits": {resource: "1"}}
    spec: dict = {"containers": [container]}
    if node:
        spec["nodeName"] = node
    else:
        spec["schedulerName"] = NO_SCHEDULER
    meta: dict = {"name": name, "namespace": NS}
    if assigned:
        meta["annotations"] = {A + "assigned-profile": assigned}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def set_phase(plane: ControlPlane, name: str, phase: str) -> None:
    status = json.dumps({"status": {"phase": phase}})
    plane.kubectl("patch", "pod", name, "-n", NS, "--subresource=status", "--type=merge", "-p", status)


def table(view) -> dict[str, tuple[int, int, int]]:
    """profile -> (slices on usable nodes, free, our pods waiting) in the pool, for the
    profiles that have any."""
    return {u.profile: (u.total, u.free, u.waiting) for u in profile_use(view, POLICY) if u.total or u.waiting}


def counter(kind: str, result: str) -> float:
    return REGISTRY.get_sample_value("gpu_rightsizer_capacity_watch_total", {"kind": kind, "result": result}) or 0.0


class RecordingSource:
    """A KubernetesSource as it is, with what went through it written down. ``hold(kind)``
    makes the next watch of that kind wait (at most HOLD_SECONDS) until ``release(kind)``,
    then start from the resourceVersion the watcher asked for."""

    HOLD_SECONDS = 60.0

    def __init__(self, real: KubernetesSource):
        self.real = real
        self.lists: collections.Counter[str] = collections.Counter()
        self.watches: list[tuple[str, str]] = []  # (kind, resourceVersion it started from)
        self.events: list[tuple[str, str, str, str, str]] = []  # (kind, type, name, resourceVersion, phase)
        self.ends: list[tuple[str, str]] = []  # (kind, "timeout" or the exception's class)
        self.waiting: dict[str, str] = {}  # kind -> the resourceVersion a held watch will start from
        self._gates: dict[str, threading.Event] = {}

    def list(self, kind):
        items, rv = self.real.list(kind)
        self.lists[kind] += 1
        return items, rv

    def watch(self, kind, resource_version, timeout_seconds):
        gate = self._gates.get(kind)
        if gate is not None:
            self.waiting[kind] = resource_version
            gate.wait(self.HOLD_SECONDS)
        self.watches.append((kind, resource_version))
        try:
            for event in self.real.watch(kind, resource_version, timeout_seconds):
                obj = event["object"]
                meta = obj.get("metadata") or {}
                phase = (obj.get("status") or {}).get("phase", "")
                self.events.append((kind, event["type"], meta.get("name", ""), meta.get("resourceVersion", ""), phase))
                yield event
        except Exception as err:
            self.ends.append((kind, type(err).__name__))
            raise
        self.ends.append((kind, "timeout"))

    def hold(self, kind: str) -> None:
        self.waiting.pop(kind, None)
        self._gates[kind] = threading.Event()

    def release(self, kind: str) -> None:
        gate = self._gates.pop(kind, None)
        if gate is not None:
            gate.set()

    def events_of(self, name: str) -> list[str]:
        return [e[1] for e in self.events if e[2] == name]


class LoopbackProxy:
    """A TCP relay on 127.0.0.1 in front of the API server, that the test can cut (every
    connection closed, new ones refused) and restore on the same port."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plane(control_plane_binaries):
    cp = ControlPlane(control_plane_binaries, keep_workdir=os.environ.get("GPU_RIGHTSIZER_E2E_KEEP") == "1")
    try:
        cp.start()
    except Exception as e:  # noqa: BLE001 - reported as a failure with the component logs
        pytest.fail(str(e), pytrace=False)
    try:
        cp.create_namespace(NS)
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def source(plane):
    # Made before the watcher starts: a node and a bound pod reach it by the first list,
    # the rest by watch events.
    plane.make_fake_gpu_node(
        "gpu-a",
        labels=node_labels("watch"),
        allocatable={"nvidia.com/mig-1g.10gb": "2", "nvidia.com/mig-2g.20gb": "1", "nvidia.com/mig-3g.40gb": "1"},
    )
    # An H100 outside the pool's selector: in the view, never in the pool's figures.
    plane.make_fake_gpu_node(
        "gpu-elsewhere",
        labels={**node_labels("watch"), POOL_LABEL: "other"},
        allocatable={"nvidia.com/mig-1g.10gb": "7"},
    )
    plane.apply(pod("bound-a1", "nvidia.com/mig-1g.10gb", node="gpu-a"))
    return RecordingSource(KubernetesSource(str(plane.kubeconfig)))


@pytest.fixture(scope="module")
def watcher(source):
    watch = ClusterWatch(source, lambda: POLICY, max_staleness=WATCH_STALENESS).start()
    assert watch.watch_seconds == 4
    try:
        yield watch
    finally:
        for kind in ("nodes", "pods"):
            source.release(kind)
        watch.stop()


def wait_view(watch: ClusterWatch, predicate, message: str, timeout: float = WAIT):
    def check():
        view = watch.view
        return view if view is not None and predicate(view) else None

    try:
        return wait_for(check, timeout, interval=0.05, message=message)
    except TimeoutError as err:
        view = watch.view
        raise AssertionError(f"{err}; the view: {table(view) if view else None}") from None


# --- the cases ------------------------------------------------------------------------


def test_the_view_counts_what_was_created_and_follows_updates(plane, source, watcher):
    wait_view(watcher, lambda v: table(v) == {"1g.10gb": (2, 1, 0), "2g.20gb": (1, 1, 0), "3g.40gb": (1, 1, 0)}, "sync")
    assert source.lists == {"nodes": 1, "pods": 1}

    plane.make_fake_gpu_node("gpu-b", labels=node_labels("watch"), allocatable={"nvidia.com/mig-1g.10gb": "3"})
    plane.apply(
        pod("bound-b1", "nvidia.com/mig-1g.10gb", node="gpu-b"),
        pod("bound-b2", "nvidia.com/mig-1g.10gb", node="gpu-b"),
        # admitted by us, not bound yet: holds its slice of the pool
        pod("waiting", "nvidia.com/mig-2g.20gb", assigned="2g.20gb"),
        pod("cpu-only"),
    )
    view = wait_view(
        watcher,
        lambda v: table(v) == {"1g.10gb": (5, 2, 0), "2g.20gb": (1, 0, 1), "3g.40gb": (1, 1, 0)},
        "the new node and pods",
    )
    assert {n.name for n in view.nodes} == {"gpu-a", "gpu-b", "gpu-elsewhere"}
    assert view.pods == 4  # GPU pods only: cpu-only is not kept
    assert source.lists == {"nodes": 1, "pods": 1}  # by watch events, not relists

    timings = {}

    def timed(label: str, predicate) -> None:
        t = time.monotonic()
        wait_view(watcher, predicate, label)
        timings[label] = time.monotonic() - t

    plane.kubectl("cordon", "gpu-b")
    timed("cordon", lambda v: table(v)["1g.10gb"] == (2, 1, 0))
    plane.kubectl("uncordon", "gpu-b")
    timed("uncordon", lambda v: table(v)["1g.10gb"] == (5, 2, 0))

    plane.kubectl("taint", "node", "gpu-a", f"{TAINT[0]}={TAINT[1]}:{TAINT[2]}")
    timed(
        "taint",
        lambda v: (
            {g.taints: (g.total, g.free) for g in v.supply(POLICY)[(POOL, "1g.10gb")]}
            == {
                (): (3, 1),
                (TAINT,): (2, 1),
            }
        ),
    )
    # A 25 GiB pod fits 3g.40gb and larger; the only 3g.40gb is behind a taint it does not tolerate.
    answers = CapacityAnswers(POLICY, lambda: watcher.view)
    big = {
        "metadata": {"name": "big", "namespace": NS, "annotations": {A + "gpu-memory": "25Gi"}},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
    }
    decision = answers.answer(big, 0)[0].decision
    assert (decision.profile.name, decision.capacity) == ("3g.40gb", "full"), decision.message
    assert "no node the pod could land on offers a slice that fits" in decision.message
    plane.kubectl("taint", "node", "gpu-a", f"{TAINT[0]}-")
    timed("untaint", lambda v: [g.taints for g in v.supply(POLICY)[(POOL, "3g.40gb")]] == [()])
    assert CapacityAnswers(POLICY, lambda: watcher.view).answer(big, 0)[0].decision.capacity == "free"

    # Deleted with a grace period, a bound pod is only Terminating (no kubelet here confirms
    # it stopped): it still holds its slice, as the scheduler counts it too.
    plane.kubectl("delete", "pod", "bound-b1", "-n", NS, "--wait=false")
    wait_for(lambda: "MODIFIED" in source.events_of("bound-b1"), WAIT, message="bound-b1 Terminating")
    watcher.publish_now()
    assert table(watcher.view)["1g.10gb"] == (5, 2, 0)
    plane.kubectl("delete", "pod", "bound-b1", "-n", NS, "--grace-period=0", "--force")
    timed("pod deleted", lambda v: table(v)["1g.10gb"] == (5, 3, 0))
    set_phase(plane, "bound-b2", "Succeeded")
    timed("pod Succeeded", lambda v: table(v)["1g.10gb"] == (5, 4, 0))
    assert source.lists == {"nodes": 1, "pods": 1}
    print("\nview followed: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))


def test_terminal_pods_are_filtered_out_by_the_api_server(plane, source, watcher):
    plane.apply(pod("done-failed", "nvidia.com/mig-3g.40gb", node="gpu-a"))
    wait_view(watcher, lambda v: table(v)["3g.40gb"] == (1, 0, 0), "the pod on 3g.40gb")
    set_phase(plane, "done-failed", "Failed")
    wait_view(watcher, lambda v: table(v)["3g.40gb"] == (1, 1, 0), "the Failed pod gone")

    stored = {p["metadata"]["name"]: p["status"]["phase"] for p in plane.get_json("pods", "-n", NS)["items"]}
    assert stored["bound-b2"] == "Succeeded" and stored["done-failed"] == "Failed"
    listed, _ = source.real.list("pods")
    assert {p["metadata"]["name"] for p in listed} == {"bound-a1", "waiting", "cpu-only"}, POD_FIELD_SELECTOR
    # A pod leaving the selection arrives as DELETED (the server filters), not as MODIFIED.
    assert source.events_of("bound-b2")[-1] == "DELETED"
    assert source.events_of("done-failed") == ["ADDED", "DELETED"]
    # ...carrying the pod as it last matched (Pending): the watcher removes it by name.
    assert [e[4] for e in source.events if e[2] == "done-failed"] == ["Pending", "Pending"]

    # A change to a terminal pod never reaches the watcher; one to a live pod after it does.
    before = len(source.events_of("bound-b2"))
    plane.kubectl("label", "pod", "bound-b2", "-n", NS, "tick=1")
    plane.kubectl("label", "pod", "bound-a1", "-n", NS, "tick=1")
    wait_for(lambda: "MODIFIED" in source.events_of("bound-a1"), WAIT, message="bound-a1's MODIFIED")
    assert len(source.events_of("bound-b2")) == before


def test_a_quiet_watch_is_renewed_from_bookmarks_without_a_relist(plane, source, watcher):
    lists = dict(source.lists)
    expired, errors = counter("pods", "expired"), counter("pods", "error")
    first = watcher.view
    since = len(source.events)
    watches_before = len(source.watches)
    # Changes the pod watch does not deliver (a terminal pod's labels) move the server's
    # resourceVersion on; a watch during which it moved gets a BOOKMARK 2 s before it ends
    # (a change between two watches, or after that point, is bookmarked to no watch).

    def resumed_from_bookmark():
        bookmarks = [e[3] for e in source.events[since:] if e[0] == "pods" and e[1] == "BOOKMARK"]
        later = [rv for kind, rv in source.watches[watches_before:] if kind == "pods"]
        return bookmarks and any(rv in bookmarks for rv in later)

    deadline = time.monotonic() + WAIT
    for tick in itertools.count(2):
        if resumed_from_bookmark():
            break
        assert time.monotonic() < deadline, (
            f"no pod watch resumed from a bookmark: events {source.events[since:]}, "
            f"watches {source.watches[watches_before:]}"
        )
        plane.kubectl("label", "pod", "bound-b2", "-n", NS, f"tick={tick}", "--overwrite")
        time.sleep(0.5)
    quiet = watcher.view
    # ...and with nothing at all changing, the view is renewed every watch (4 s) all the same.
    wait_view(watcher, lambda v: v.observed_at >= quiet.observed_at + 8, "observed_at to move on by two watches")
    assert [e for e in source.events[since:] if e[1] != "BOOKMARK"] == []
    assert watcher.age() < 4 + 1
    assert dict(source.lists) == lists  # no relist
    assert (counter("pods", "expired"), counter("pods", "error")) == (expired, errors)
    assert table(watcher.view) == table(first)
    renewals = [rv for kind, rv in source.watches[watches_before:] if kind == "nodes"]
    assert len(renewals) >= 2 and len(set(renewals)) == 1  # nodes: the same resourceVersion, no events


def test_a_resource_version_the_restarted_server_no_longer_has_is_relisted(plane, source, watcher):
    lists, expired, errors = source.lists["pods"], counter("pods", "expired"), counter("pods", "error")
    source.hold("pods")
    stale_rv = wait_for(lambda: source.waiting.get("pods"), WAIT, message="the pod watch to end and wait")
    # While the watcher does not watch pods: a pod made, one deleted.
    plane.apply(pod("bound-a2", "nvidia.com/mig-3g.40gb", node="gpu-a"))
    plane.kubectl("delete", "pod", "waiting", "-n", NS, "--wait=false")
    took = plane.restart_apiserver()

    # The real server now answers a watch from the watcher's resourceVersion with 410 Gone.
    probe = KubernetesSource(str(plane.kubeconfig))

    def gone() -> bool:
        try:
            for _ in probe.watch("pods", stale_rv, 1):
                pass
        except Expired:
            return True
        return False

    wait_for(gone, 30, message=f"410 for a watch from resourceVersion {stale_rv}")
    source.release("pods")
    view = wait_view(
        watcher,
        lambda v: table(v) == {"1g.10gb": (5, 4, 0), "2g.20gb": (1, 1, 0), "3g.40gb": (1, 0, 0)},
        "the relisted view",
    )
    assert ("pods", "Expired") in source.ends
    assert source.lists["pods"] == lists + 1
    assert (counter("pods", "expired"), counter("pods", "error")) == (expired + 1, errors)
    assert {n.name for n in view.nodes} == {"gpu-a", "gpu-b", "gpu-elsewhere"}
    after = [rv for kind, rv in source.watches if kind == "pods"][-1]
    assert after != stale_rv and int(after) > int(stale_rv)
    # The node watch broke with the server and came back by itself (an error, a backoff, a relist).
    wait_view(watcher, lambda v: watcher.age() < 4 + 1, "a fresh view after the restart", timeout=45)
    print(f"\nkube-apiserver restarted in {took:.1f}s; pods: 410 then one relist; nodes lists {source.lists['nodes']}")


# --- the served webhook, with the API server cut off -------------------------------------


PROBES: list[int] = []  # kubectl's exit code for each probe


def served_probe(plane: ControlPlane) -> tuple[str, str, str]:
    """A 5 GiB pod created with --dry-run=server in the opted-in namespace: (the profile
    the webhook assigned, its decision annotation, kubectl's stderr)."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": SERVED_NS, "annotations": {A + "gpu-memory": "5Gi"}},
        "spec": {
            "containers": [
                {"name": "c", "image": "registry.invalid/none", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ]
        },
    }
    out = plane.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body), timeout=30, check=False
    )
    PROBES.append(out.returncode)
    if out.returncode != 0:
        return "", "", out.stderr
    annotations = json.loads(out.stdout)["metadata"].get("annotations", {})
    return annotations.get(A + "assigned-profile", ""), annotations.get(A + "decision", ""), out.stderr


def metric_samples(port: int, ca_file: Path) -> dict[str, float]:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", timeout=10, context=ctx) as r:
        text = r.read().decode()
    return {
        key: float(value)
        for key, _, value in (line.rpartition(" ") for line in text.splitlines())
        if key.startswith("gpu_rightsizer_capacity")
    }


def test_served_webhook_answers_with_the_api_server_cut_off_and_recovers(plane, tmp_path):
    # Its own pool: 1g.10gb full, 2g.20gb free. Capacity-aware: 2g.20gb; static: 1g.10gb.
    plane.make_fake_gpu_node(
        "gpu-served",
        labels=node_labels("served"),
        allocatable={"nvidia.com/mig-1g.10gb": "1", "nvidia.com/mig-2g.20gb": "8"},
    )
    plane.apply(pod("served-holder", "nvidia.com/mig-1g.10gb", node="gpu-served"))
    proxy = LoopbackProxy(int(plane.server.rsplit(":", 1)[1]))
    kubeconfig = yaml.safe_load(plane.kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    proxied = tmp_path / "kubeconfig-through-proxy"
    proxied.write_text(yaml.safe_dump(kubeconfig))
    proxied.chmod(0o600)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_data("served", f"{SERVED_STALENESS:g}s")))
    cert = make_serving_cert(tmp_path / "certs")
    port = free_port()
    server = ManagedProcess.start(
        "gpu-rightsizer",
        [
            sys.executable, "-m", "webhook.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--cert-file", str(cert.cert_file), "--key-file", str(cert.key_file),
            "--workers", "1", "--policy", str(policy), "--kubeconfig", str(proxied),
        ],
        tmp_path / "serve.log",
        cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for_port(port, process=server, timeout=60)
        plane.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "priorityclasses.yaml"))
        config = yaml.safe_load((ROOT / "manifests" / "base" / "mutatingwebhookconfiguration.yaml").read_text())
        for webhook in config["webhooks"]:
            webhook["clientConfig"] = {"url": f"https://127.0.0.1:{port}/mutate", "caBundle": cert.ca_bundle_b64}
        plane.apply(config)
        plane.create_namespace(SERVED_NS)
        plane.kubectl("label", "namespace", SERVED_NS, "gpu-rightsizer.io/enabled=true")

        def answer(profile: str, *words: str):
            def check():
                got = served_probe(plane)
                return got if got[0] == profile and all(w in got[1] for w in words) else None

            return check

        started = time.monotonic()
        _, decision, warning = wait_for(
            answer("2g.20gb", "capacity: 1g.10gb: 0 of 1 free in pool h100-80"), 60, message="a capacity-aware answer"
        )
        print(f"\nserved webhook capacity-aware {time.monotonic() - started:.1f}s after its port opened: {decision}")
        assert "2g.20gb: 8 free in pool h100-80 -> nvidia.com/mig-2g.20gb" in decision
        assert "Warning: gpu-rightsizer:" in warning

        proxy.cut()
        cut = time.monotonic()
        del PROBES[:]
        # Within maxStaleness the last view still counts (when the probe was quick enough to tell)...
        profile = served_probe(plane)[0]
        if time.monotonic() - cut < SERVED_STALENESS - 2:
            assert profile == "2g.20gb"
        # ...past it, the static choice, said in the decision and the warning; every create answered.
        _, decision, warning = wait_for(
            answer("1g.10gb", "not trusted; static choice"), 30, interval=0.5, message="a stale, static answer"
        )
        stale_after = time.monotonic() - cut
        assert stale_after >= SERVED_STALENESS - 1.5, stale_after
        assert f"(capacity.maxStaleness {SERVED_STALENESS:g}s), not trusted; static choice" in decision
        assert "not trusted" in warning
        samples = metric_samples(port, cert.ca_file)
        assert samples['gpu_rightsizer_capacity_decisions_total{result="stale"}'] >= 1
        assert samples["gpu_rightsizer_capacity_view_age_seconds"] > SERVED_STALENESS
        assert samples['gpu_rightsizer_capacity_watch_total{kind="pods",result="error"}'] >= 1

        proxy.restore()
        restored = time.monotonic()
        wait_for(
            answer("2g.20gb", "free in pool h100-80 -> nvidia.com/mig-2g.20gb"),
            45,
            interval=0.5,
            message="capacity-aware answers again",
        )
        back_after = time.monotonic() - restored
        assert metric_samples(port, cert.ca_file)["gpu_rightsizer_capacity_view_age_seconds"] < SERVED_STALENESS
        server.check_alive()
        assert PROBES and set(PROBES) == {0}, PROBES  # every create was answered, cut off or not
        print(f"cut: stale after {stale_after:.1f}s; restored: capacity-aware again after {back_after:.1f}s")
    finally:
        stop_all([server])
        proxy.cut()
        plane.kubectl("delete", "mutatingwebhookconfiguration", "gpu-rightsizer", check=False)
