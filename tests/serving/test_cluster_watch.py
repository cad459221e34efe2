"""The capacity watcher (webhook/serving/cluster_watch.py) against a fake watch source:
list then events, bookmarks, 410 relists, an unreachable server, and the answers it feeds."""

from __future__ import annotations

import json
import queue
import time
from types import SimpleNamespace

import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.core.test_capacity import LAYOUT, gpu_pod, held, node
from webhook.admission.capacity_answers import CapacityAnswers
from webhook.core.policy import compile_policy, default_policy_text
from webhook.serving.cluster_watch import POD_FIELD_SELECTOR, ClusterWatch, Expired, KubernetesSource

data = yaml.safe_load(default_policy_text())
data["capacity"] = {"mode": "prefer-free", "maxStaleness": "3s"}
POLICY = compile_policy(data)


class FakeSource:
    def __init__(self, nodes, pods, quotas=()):
        self.items = {"nodes": nodes, "pods": pods, "resourcequotas": list(quotas)}
        self.events = {"nodes": queue.Queue(), "pods": queue.Queue(), "resourcequotas": queue.Queue()}
        self.lists = {"nodes": 0, "pods": 0, "resourcequotas": 0}
        self.down = False

    def list(self, kind):
        if self.down:
            raise ConnectionRefusedError("API server unreachable")
        self.lists[kind] += 1
        return list(self.items[kind]), "1"

    def watch(self, kind, rv, timeout_seconds):
        if self.down:
            raise ConnectionRefusedError("API server unreachable")
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline and not self.down:
            try:
                event = self.events[kind].get(timeout=0.05)
            except queue.Empty:
                continue
            if event == "expire":
                raise Expired("410")
            yield event


def wait(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    raise AssertionError("condition not met")


def test_view_follows_events_and_answers_use_it():
    source = FakeSource([node(alloc=LAYOUT)], [held("a", "nvidia.com/mig-1g.10gb", "n1")])
    watch = ClusterWatch(source, lambda: POLICY, max_staleness=3.0, debounce=0.01).start()
    try:
        wait(lambda: watch.view is not None and watch.view.pods == 1)
        answers = CapacityAnswers(POLICY, lambda: watch.view)
        first = answers.answer(gpu_pod(), 0)[0].decision
        assert first.profile.name == "1g.10gb" and first.capacity == "free"
        # the second pod sees the first one reserved before the view shows it
        second = answers.answer({**gpu_pod(), "metadata": {**gpu_pod()["metadata"], "name": "q"}}, 0)[0].decision
        assert second.profile.name == "2g.20gb"
        source.events["pods"].put(
            {"type": "ADDED", "object": held("p", "nvidia.com/mig-1g.10gb", "n1", assigned="1g.10gb")}
        )
        source.events["pods"].put({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
        wait(lambda: watch.view.pods == 2)
        source.events["nodes"].put({"type": "DELETED", "object": node()})
        wait(lambda: watch.view.nodes == ())
        source.events["pods"].put("expire")
        wait(lambda: source.lists["pods"] >= 2)
    finally:
        watch.stop()


def test_unreachable_server_gives_static_answers_and_says_stale():
    source = FakeSource([node(alloc={"nvidia.com/mig-3g.40gb": 1})], [])
    watch = ClusterWatch(source, lambda: POLICY, max_staleness=3.0, debounce=0.01).start()
    try:
        wait(lambda: watch.view is not None)
        answers = CapacityAnswers(POLICY, lambda: watch.view)
        assert answers.answer(gpu_pod(), 0)[0].decision.profile.name == "3g.40gb"
        source.down = True
        wait(lambda: watch.age() > 3.0, timeout=10)
        decision = answers.answer(gpu_pod(), 0)[0].decision
        assert decision.profile.name == "1g.10gb" and decision.capacity == "stale"
        assert "not trusted; static choice" in decision.message
    finally:
        watch.stop()


def test_no_view_before_sync():
    source = FakeSource([], [])
    source.down = True
    watch = ClusterWatch(source, lambda: POLICY).start()
    try:
        decision = CapacityAnswers(POLICY, lambda: watch.view).answer(gpu_pod(), 0)[0].decision
        assert decision.capacity == "no-view" and decision.profile.name == "1g.10gb"
    finally:
        watch.stop()


def gpu_quota(namespace: str, gpus: str) -> dict:
    return {
        "metadata": {"name": "team-gpus", "namespace": namespace, "resourceVersion": "1"},
        "spec": {"hard": {"requests.nvidia.com/gpu": gpus}},
    }


def test_quota_view_follows_quotas_and_the_shared_pod_watch():
    """quota.mode alone watches pods and ResourceQuotas (no nodes); one pod watch feeds both
    views; a reloaded policy that turns capacity on adds the node watch to the same watcher."""
    quota_policy = compile_policy({**yaml.safe_load(default_policy_text()), "quota": {"mode": "gpu-equivalent"}})
    pod = held("a", "nvidia.com/mig-1g.10gb", "n1")
    source = FakeSource([node(alloc=LAYOUT)], [pod], [gpu_quota(pod["metadata"]["namespace"], "1")])
    watch = ClusterWatch(
        source, lambda: quota_policy, max_staleness=3.0, debounce=0.01, kinds=("pods", "resourcequotas")
    )
    watch.start()
    try:
        wait(lambda: watch.quota_view is not None)
        namespace = pod["metadata"]["namespace"]
        assert [q.name for q in watch.quota_view.gpu_quotas[namespace]] == ["team-gpus"]
        assert watch.quota_view.usage[namespace].slices == {"1g.10gb": 1}
        assert source.lists["nodes"] == 0
        source.events["resourcequotas"].put({"type": "DELETED", "object": gpu_quota(namespace, "1")})
        wait(lambda: namespace not in watch.quota_view.gpu_quotas)
        source.events["pods"].put({"type": "ADDED", "object": held("b", "nvidia.com/mig-3g.40gb", "n1")})
        wait(lambda: watch.quota_view.usage[namespace].slices == {"1g.10gb": 1, "3g.40gb": 1})
        watch.watch_also(("nodes", "pods"))
        wait(lambda: source.lists["nodes"] == 1 and watch.view is not None and len(watch.view.nodes) == 1)
        source.down = True  # the view ages past maxStaleness: no quota view, so pods are told
        wait(lambda: watch.quota_view is None, timeout=15)
    finally:
        watch.stop()


class StreamedResponse:
    """What the kubernetes client returns for a watch with _preload_content=False."""

    def __init__(self, events):
        data = "".join(json.dumps(e) + "\n" for e in events).encode()
        self.chunks = [data[i : i + 7] for i in range(0, len(data), 7)]  # events split across chunks
        self.closed = self.released = False

    def stream(self, amt=None, decode_content=None):
        yield from self.chunks

    def close(self):
        self.closed = True

    def release_conn(self):
        self.released = True


def source_answering(answer):
    calls = []

    def list_pods(**kwargs):
        """As the generated client's:

        :rtype: V1PodList
        """
        calls.append(kwargs)
        if isinstance(answer, Exception):
            raise answer
        return answer

    source = KubernetesSource.__new__(KubernetesSource)  # no kubeconfig: the API is this fake
    source.api = SimpleNamespace(list_pod_for_all_namespaces=list_pods)
    return source, calls


def test_kubernetes_source_yields_the_raw_watch_events_and_410_as_expired(monkeypatch):
    """Events are the server's JSON as is, never typed models (0.8 ms a pod, under the GIL);
    a 410 ERROR event (what kube-apiserver sends for a too-old resourceVersion) is Expired."""

    def typed(*args, **kwargs):
        raise AssertionError("a typed model was built")

    monkeypatch.setattr(ApiClient, "deserialize", typed)
    pod = {"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "7"}, "status": {"phase": "Pending"}}
    bookmark = {"kind": "Pod", "metadata": {"resourceVersion": "9"}}
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 5 (8)"}
    response = StreamedResponse(
        [{"type": "ADDED", "object": pod}, {"type": "BOOKMARK", "object": bookmark}, {"type": "ERROR", "object": gone}]
    )
    source, calls = source_answering(response)
    seen = []
    with pytest.raises(Expired, match="too old resource version"):
        for event in source.watch("pods", "5", 4):
            seen.append(event)
    assert seen == [{"type": "ADDED", "object": pod}, {"type": "BOOKMARK", "object": bookmark}]
    assert calls == [
        {
            "watch": True,
            "resource_version": "5",
            "allow_watch_bookmarks": True,
            "timeout_seconds": 4,
            "_preload_content": False,
            "_request_timeout": 14,
            "field_selector": POD_FIELD_SELECTOR,
        }
    ]
    assert response.closed and response.released


def test_kubernetes_source_other_watch_errors_are_not_expired():
    failing = StreamedResponse([{"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}])
    with pytest.raises(RuntimeError, match="watch error"):
        list(source_answering(failing)[0].watch("pods", "5", 4))
    with pytest.raises(Expired):
        list(source_answering(ApiException(status=410, reason="Gone"))[0].watch("pods", "5", 4))
    with pytest.raises(ApiException):
        list(source_answering(ApiException(status=403, reason="Forbidden"))[0].watch("pods", "5", 4))


def test_a_policy_selecting_on_a_new_label_relists_the_nodes():
    """The tally keeps only the node labels the policy selects on; a reloaded policy that
    selects on another one gets no view (the static choice) until the nodes are listed
    again with that label kept, then capacity-aware answers on the new selector."""
    labelled = node(alloc={"nvidia.com/mig-3g.40gb": 1})
    labelled["metadata"]["labels"]["example.com/rack"] = "r1"
    labelled["metadata"]["labels"]["example.com/unused"] = "x"
    source = FakeSource([labelled], [])
    current = {"policy": POLICY}
    watch = ClusterWatch(source, lambda: current["policy"], max_staleness=3.0, debounce=0.01).start()
    try:
        wait(lambda: watch.view is not None)
        assert "example.com/rack" not in watch.view.nodes[0].labels  # not selected on: not kept
        assert "nvidia.com/gpu.product" in watch.view.nodes[0].labels
        lists = source.lists["nodes"]
        racked = yaml.safe_load(default_policy_text())
        racked["capacity"] = {"mode": "prefer-free", "maxStaleness": "3s"}
        racked["pools"][0]["nodeSelector"] = {
            **racked["pools"][0].get("nodeSelector", {}),
            "example.com/rack": "r1",
        }
        current["policy"] = compile_policy(racked)
        wait(lambda: source.lists["nodes"] > lists, timeout=10)
        wait(lambda: watch.view is not None and "example.com/rack" in watch.view.nodes[0].labels)
        assert "example.com/unused" not in watch.view.nodes[0].labels
        decision = CapacityAnswers(current["policy"], lambda: watch.view).answer(gpu_pod(), 0)[0].decision
        assert decision.capacity == "free" and decision.profile.name == "3g.40gb"
    finally:
        watch.stop()


def test_a_broken_watch_resumes_from_the_last_event_without_a_relist():
    """A dropped connection (an API server rollout) re-opens the watch from the last
    resourceVersion seen, as client-go does; listing 100,000 pods again is for 410 only."""

    class Dropping(FakeSource):
        def __init__(self, *args):
            super().__init__(*args)
            self.watched_from = []

        def watch(self, kind, rv, timeout_seconds):
            if kind == "pods":
                self.watched_from.append(rv)
            if kind == "pods" and len(self.watched_from) == 1:
                pod = held("b", "nvidia.com/mig-1g.10gb", "n1")
                pod["metadata"]["resourceVersion"] = "42"
                yield {"type": "ADDED", "object": pod}
                raise ConnectionResetError("connection reset by peer")
            yield from super().watch(kind, rv, timeout_seconds)

    source = Dropping([node(alloc=LAYOUT)], [held("a", "nvidia.com/mig-1g.10gb", "n1")])
    watch = ClusterWatch(source, lambda: POLICY, max_staleness=3.0, debounce=0.01).start()
    try:
        wait(lambda: len(source.watched_from) >= 2, timeout=10)
        assert source.watched_from[:2] == ["1", "42"]
        wait(lambda: watch.view is not None and watch.view.pods == 2)
        assert source.lists["pods"] == 1
        source.events["pods"].put("expire")  # a 410 still relists
        wait(lambda: source.lists["pods"] == 2)
    finally:
        watch.stop()


def test_every_list_freezes_its_records_out_of_the_collector(monkeypatch):
    """A relist replaces every record with new ones, however many there were: each list is
    followed by gc.freeze(), not only growth by FREEZE_EVERY records."""
    import webhook.serving.cluster_watch as cluster_watch

    freezes = []
    monkeypatch.setattr(cluster_watch.gc, "freeze", lambda: freezes.append(1))
    source = FakeSource([node(alloc=LAYOUT)], [held("a", "nvidia.com/mig-1g.10gb", "n1")])
    watch = ClusterWatch(source, lambda: POLICY, max_staleness=3.0, debounce=0.01).start()
    try:
        wait(lambda: watch.view is not None)
        after_first = len(freezes)
        assert after_first >= 2  # the node list and the pod list
        source.events["pods"].put("expire")  # a 410: the pods are listed again, same count
        wait(lambda: source.lists["pods"] == 2)
        wait(lambda: len(freezes) > after_first)
    finally:
        watch.stop()
