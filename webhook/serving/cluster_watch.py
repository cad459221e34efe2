"""The cluster watcher: Nodes, Pods and ResourceQuotas from the API server, into immutable views.

One per worker process (started by `serve` only when the policy's capacity.mode is on):
a thread per kind lists, then watches from the list's resourceVersion with bookmarks; a
broken watch is re-opened from the last event seen, with backoff, and only a 410 Gone
relists (at once). Events update a
ClusterTally (webhook/core/capacity.py) under a lock; a publisher thread turns changes into
a new CapacityView at most every ``debounce`` seconds, computes its per-pool supply for the
policy in force, and publishes it by one reference assignment. An admission reads
``watch.view`` and nothing else: it never waits on the API server, which may be down.

Per worker, not in the gunicorn master: a worker owns its view and its reservations
(webhook/admission/capacity_answers.py) with no shared memory or IPC, and a worker restart
rebuilds both. The price is one watch per worker (2 per replica) and a race between the
workers of one replica as wide as between replicas (docs/capacity.md).

Which kinds are watched follows the policy: nodes and pods for capacity.mode, pods and
ResourceQuotas for quota.mode (webhook/core/quota.py); the pod watch is one, shared. Each
publish makes a CapacityView and, when ResourceQuotas are watched, a QuotaView from the
same pod records.
"""

from __future__ import annotations

import gc
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from webhook.core.capacity import CapacityView, ClusterTally, node_label_keys
from webhook.core.policy import Policy
from webhook.core.quota import QuotaView, quota_view
from webhook.serving import metrics
from webhook.serving.logs import LOGGER

log = logging.getLogger(LOGGER)

# Pods that can hold a slice: what the API server filters, so Succeeded and Failed pods
# (often most of a batch cluster's pods) never reach us.
POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
FREEZE_EVERY = 10_000  # records (pods and nodes) added between two gc.freeze() calls


class WatchSource(Protocol):
    """Where lists and watch events come from: the API server, or a fake in tests and bench/."""

    def list(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        """(every item, the list's resourceVersion)."""
        ...

    def watch(self, kind: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """Events {"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": dict} from
        ``resource_version``; ends after ``timeout_seconds``; raises Expired on 410."""
        ...


class Expired(Exception):
    """The resourceVersion is too old to watch from: relist."""


class Relabel(Exception):
    """The policy now selects on node labels the tally dropped: relist the nodes."""


class KubernetesSource:
    """The API server through the kubernetes client (in-cluster, or a kubeconfig)."""

    def __init__(self, kubeconfig: str | None = None):
        from kubernetes import client, config

        configuration = client.Configuration()
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
        self.api = client.CoreV1Api(client.ApiClient(configuration))

    def _call(self, kind: str) -> tuple[Callable[..., Any], dict[str, Any]]:
        if kind == "nodes":
            return self.api.list_node, {}
        if kind == "resourcequotas":
            return self.api.list_resource_quota_for_all_namespaces, {}
        return self.api.list_pod_for_all_namespaces, {"field_selector": POD_FIELD_SELECTOR}

    def list(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        call, kwargs = self._call(kind)
        items: list[dict[str, Any]] = []
        token = None
        while True:
            # Raw JSON: the typed models drop fields and cost 10x to build.
            page = json.loads(
                call(limit=500, _continue=token, _preload_content=False, _request_timeout=60, **kwargs).data
            )
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, page["metadata"]["resourceVersion"]

    def watch(self, kind: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        # The stream is read here, not through kubernetes.watch.Watch: that builds a typed model
        # of every event's object (about 0.8 ms for a pod with client 37, 40x json.loads, under
        # the worker's GIL) that nothing here reads, and a model that rejects an object breaks
        # the watch.
        from kubernetes.client.exceptions import ApiException

        call, kwargs = self._call(kind)
        try:
            response = call(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=timeout_seconds + 10,
                **kwargs,
            )
        except ApiException as err:
            if err.status == 410:
                raise Expired(str(err)) from None
            raise
        try:
            for line in _lines(response):
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    # A Status: 410 when the resourceVersion is older than the server keeps.
                    if obj.get("code") == 410:
                        raise Expired(str(obj.get("message", obj)))
                    raise RuntimeError(f"watch error: {str(obj)[:300]}")
                yield {"type": event.get("type"), "object": obj}
        finally:
            response.close()  # also when the watcher stops mid-stream: the connection is not reused
            response.release_conn()


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-separated JSON events of a watch response, as they arrive."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:end], buffer[end + 1 :]
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


@dataclass
class _Feed:
    kind: str
    synced: bool = False
    contact: float = 0.0  # last successful list, event, bookmark or clean watch end


class ClusterWatch:
    """Keeps ``view`` current; see the module docstring."""

    def __init__(
        self,
        source: WatchSource,
        policy: Callable[[], Policy],
        max_staleness: float = 30.0,
        debounce: float = 0.005,
        clock: Callable[[], float] = time.time,
        kinds: tuple[str, ...] = ("nodes", "pods"),
    ):
        self.source = source
        self.policy = policy
        self.debounce = debounce
        self.clock = clock
        self.max_staleness = max_staleness
        # A watch ends (and is re-opened) well within the staleness bound, so a quiet but
        # healthy cluster never looks stale.
        self.watch_seconds = max(1, int(max_staleness / 3))
        self.tally = ClusterTally(label_keys=frozenset())
        self._relabel = threading.Event()
        self._progress: dict[str, str] = {}  # kind -> resourceVersion of the last event applied
        self.published = 0  # views built from changes (not the same view renewed)
        self._frozen_at = 0  # records kept at the last gc.freeze()
        self.feeds = {kind: _Feed(kind) for kind in kinds}
        self.quotas: dict[tuple[str, str], dict[str, Any]] = {}
        self._view: CapacityView | None = None
        self._quota_view: QuotaView | None = None
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- what admissions read

    @property
    def view(self) -> CapacityView | None:
        return self._view

    @property
    def quota_view(self) -> QuotaView | None:
        """The namespaces' GPU quotas and what their pods hold; None until ResourceQuotas
        are watched and synced, or when the view is older than the staleness bound."""
        view = self._quota_view
        age = self.age()
        return view if view is not None and age is not None and age <= self.max_staleness else None

    def age(self) -> float | None:
        view = self._view
        return self.clock() - view.observed_at if view is not None else float("inf")

    # --- life cycle

    def start(self) -> ClusterWatch:
        for kind in self.feeds:
            self._start_feed(kind)
        publisher = threading.Thread(target=self._publish_forever, name="capacity-publish", daemon=True)
        self._threads.append(publisher)
        publisher.start()
        return self

    def _start_feed(self, kind: str) -> None:
        thread = threading.Thread(target=self._feed, args=(kind,), name=f"capacity-{kind}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def watch_also(self, kinds: tuple[str, ...]) -> None:
        """Watch these kinds too (a reloaded policy turned quota.mode or capacity.mode on);
        views wait until the new ones have listed once."""
        with self._lock:
            new = [kind for kind in kinds if kind not in self.feeds]
            for kind in new:
                self.feeds[kind] = _Feed(kind)
        for kind in new:
            self._start_feed(kind)

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._view is not None:
                return True
            time.sleep(0.02)
        return False

    # --- feeds

    def _feed(self, kind: str) -> None:
        backoff = BACKOFF_START
        rv: str | None = None  # where the watch resumes from; None: list first
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist(kind)
                    self._progress[kind] = rv
                    metrics.CAPACITY_WATCH.labels(kind, "list").inc()
                while not self._stop.is_set():
                    rv = self._watch(kind, rv)
                    backoff = BACKOFF_START
            except (Expired, Relabel) as err:
                if isinstance(err, Expired):
                    metrics.CAPACITY_WATCH.labels(kind, "expired").inc()
                rv = None
                continue
            except Exception as err:  # noqa: BLE001 - the API server is down, slow or refusing: back off
                # A broken connection (an API server rollout, a load balancer reset) resumes
                # the watch from the last event seen, as client-go's reflector does: no
                # relist of every pod. Too old by then: the server says 410 and we relist.
                if rv is not None:
                    rv = self._progress.get(kind, rv)
                metrics.CAPACITY_WATCH.labels(kind, "error").inc()
                log.warning(
                    "capacity watch failed; retrying",
                    extra={
                        "fields": {"kind": kind, "error": f"{type(err).__name__}: {str(err)[:300]}", "retry_s": backoff}
                    },
                )
                # Jitter, not a secret: the standard generator is right here.
                self._stop.wait(backoff * (0.5 + random.random()))  # noqa: S311  # nosec B311
                backoff = min(BACKOFF_MAX, backoff * 2)

    def _relist(self, kind: str) -> str:
        """List ``kind`` into the tally; the raw list is dropped on return, not held by
        this thread's frame for as long as the watch that follows runs."""
        if kind == "nodes":
            keys = node_label_keys(self.policy())
            with self._lock:
                self.tally.label_keys = keys
            self._relabel.clear()
        items, rv = self.source.list(kind)
        self._replace(kind, items)
        return rv

    def _watch(self, kind: str, rv: str) -> str:
        for event in self.source.watch(kind, rv, self.watch_seconds):
            if self._stop.is_set():
                break
            if kind == "nodes" and self._relabel.is_set():
                raise Relabel
            obj = event.get("object") or {}
            rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            kind_of_event = event.get("type")
            if kind_of_event == "ERROR":
                raise Expired(str(obj.get("message", obj))) if obj.get("code") == 410 else RuntimeError(str(obj)[:300])
            with self._lock:
                changed = kind_of_event != "BOOKMARK" and self._apply(kind, kind_of_event, obj)
                self.feeds[kind].contact = self.clock()
            self._progress[kind] = rv
            if changed:
                self._changed.set()  # contact alone: the publisher renews the view within 1 s
        with self._lock:
            self.feeds[kind].contact = self.clock()  # a watch that ended on time: the server is there
        if kind == "nodes" and self._relabel.is_set():
            raise Relabel
        return rv

    def _apply(self, kind: str, event: str | None, obj: dict[str, Any]) -> bool:
        """Apply one watch event; whether it changed what the views hold."""
        meta = obj.get("metadata") or {}
        if kind == "resourcequotas":
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            if event == "DELETED":
                return self.quotas.pop(key, None) is not None
            self.quotas[key] = obj
            return True
        if kind == "nodes":
            if event == "DELETED":
                return self.tally.remove_node(str(meta.get("name", "")))
            return self.tally.set_node(obj)
        if event == "DELETED":
            return self.tally.remove_pod((str(meta.get("namespace", "")), str(meta.get("name", ""))))
        return self.tally.set_pod(obj)

    def _replace(self, kind: str, items: list[dict[str, Any]]) -> None:
        with self._lock:
            if kind == "resourcequotas":
                self.quotas = {
                    (
                        str((q.get("metadata") or {}).get("namespace", "")),
                        str((q.get("metadata") or {}).get("name", "")),
                    ): q
                    for q in items
                }
            elif kind == "nodes":
                self.tally.clear_nodes()
                for item in items:
                    self.tally.set_node(item)
            else:
                self.tally.clear_pods()
                for item in items:
                    self.tally.set_pod(item)
            feed = self.feeds[kind]
            feed.synced, feed.contact = True, self.clock()
            self._freeze_records(listed=True)
        self._changed.set()

    def _freeze_records(self, listed: bool = False) -> None:
        """Take the records kept so far out of the cyclic garbage collector's sight.

        100,000 pod records make every full collection a 150 ms pause, which the
        admissions of this process wait out (bench/bench_capacity.py). The records are
        plain tuples with no reference cycles, so reference counting still frees them when
        they go; gc.freeze() only stops the collector scanning them again and again
        (https://docs.python.org/3/library/gc.html#gc.freeze), as gunicorn_conf's
        post_worker_init does for what a worker loads at start. Done after every list
        (its records are all new, however many there were before) and whenever the tally
        has grown by FREEZE_EVERY records since the last freeze or its smallest size after it."""
        kept = len(self.tally.pods) + len(self.tally.nodes)
        if listed or kept - self._frozen_at >= FREEZE_EVERY:
            gc.freeze()
            self._frozen_at = kept
        elif kept < self._frozen_at:
            self._frozen_at = kept  # growth counts from the smallest size since

    # --- publishing

    def _publish_forever(self) -> None:
        policy = None
        while not self._stop.is_set():
            changed = self._changed.wait(1.0)
            if self._stop.is_set():
                return
            if changed:
                self._stop.wait(self.debounce)  # let a burst of events land in one view
            started = time.monotonic()
            try:
                policy = self._publish(changed, policy)
            except Exception:  # noqa: BLE001 - a bug here must not stop publishing
                log.exception("capacity view publish failed")
            # Admissions share this process (and its GIL): under constant churn in a big
            # cluster, building views back to back would take a core from them. Resting
            # twice as long as the build keeps the publisher to a third of one.
            self._stop.wait(min(1.0, 2 * (time.monotonic() - started)))

    def publish_now(self) -> None:
        """Build and publish at once (tests, bench)."""
        self._publish(True, None)

    def _publish(self, changed: bool, last_policy: Policy | None) -> Policy | None:
        policy = self.policy()
        with self._lock:
            if "nodes" in self.feeds and not node_label_keys(policy) <= (self.tally.label_keys or frozenset()):
                # A reloaded policy selects on labels the tally did not keep: no view
                # (the static choice, said so) until the nodes are listed again.
                self.feeds["nodes"].synced = False
                self._view = None
                self._relabel.set()
            if not all(f.synced for f in self.feeds.values()):
                self._changed.clear()
                return last_policy
            contact = min(f.contact for f in self.feeds.values())
            self._changed.clear()
            current = self._view
            if changed or current is None:
                self.published += 1
                self._freeze_records()
                view = self.tally.snapshot(contact)
                quotas = (
                    quota_view(
                        list(self.quotas.values()), [(ns, tuple(held.items())) for ns, held in self.tally.held.items()]
                    )
                    if "resourcequotas" in self.feeds
                    else None
                )
            else:
                view, quotas = None, self._quota_view
        if view is None:
            # Nothing changed: the same view, younger. The per-policy supply carries over.
            view = replace(current, observed_at=contact, _index=current._index, _offers=current._offers)  # type: ignore[arg-type]
        view.supply(policy)  # computed here, not by the first admission
        self._view, self._quota_view = view, quotas
        return policy


def watched_kinds(policy: Policy) -> tuple[str, ...]:
    """What the policy needs watched: nodes and pods for capacity.mode, pods and
    ResourceQuotas for quota.mode; nothing when both are off."""
    kinds: list[str] = []
    if policy.capacity.enabled:
        kinds += ["nodes", "pods"]
    if policy.quota_mode != "off":
        kinds += [k for k in ("pods", "resourcequotas") if k not in kinds]
    return tuple(kinds)


class CapacityFeed:
    """The worker's watcher, started the first time a policy turns capacity.mode or
    quota.mode on (at start or on a reload); until then, and when the client cannot be
    configured, there is no view (decisions are static, quotas unchecked, and they say so)."""

    def __init__(self, kubeconfig: str | None = None, source: WatchSource | None = None):
        self.kubeconfig = kubeconfig
        self.source = source
        self.watch: ClusterWatch | None = None
        self._lock = threading.Lock()

    def view(self) -> CapacityView | None:
        watch = self.watch
        return watch.view if watch is not None else None

    def age(self) -> float | None:
        watch = self.watch
        return watch.age() if watch is not None else None

    def quota_view(self) -> QuotaView | None:
        watch = self.watch
        return watch.quota_view if watch is not None else None

    def ensure_started(
        self, policy: Callable[[], Policy], max_staleness: float, kinds: tuple[str, ...] = ("nodes", "pods")
    ) -> None:
        with self._lock:
            if self.watch is not None:
                self.watch.watch_also(kinds)
                return
            try:
                source = self.source or KubernetesSource(self.kubeconfig)
            except Exception as err:  # noqa: BLE001 - no token, no kubeconfig: static decisions, said in each
                log.error(
                    "capacity.mode or quota.mode is on but the Kubernetes client cannot be configured; "
                    "decisions stay static and quotas unchecked",
                    extra={"fields": {"error": f"{type(err).__name__}: {str(err)[:300]}"}},
                )
                return
            self.watch = ClusterWatch(source, policy, max_staleness=max_staleness, kinds=kinds).start()
            log.info(
                "cluster watch started",
                extra={"fields": {"kubeconfig": self.kubeconfig or "in-cluster", "kinds": ",".join(kinds)}},
            )
