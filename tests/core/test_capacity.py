"""Capacity-aware choice (webhook/core/capacity.py): the view, the choice, staleness,
reservations, the policy switch; property tests over random views."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core import capacity as cap
from webhook.core.decision import decide
from webhook.core.errors import PolicyError
from webhook.core.mutation import mutate_pod
from webhook.core.policy import compile_policy, default_policy_text, profile_node_requirements
from webhook.core.sizing import MemoryNeed

PRODUCT = "NVIDIA-H100-80GB-HBM3"
GIB = 1024**3


def policy_with(**capacity):
    data = yaml.safe_load(default_policy_text())
    data["capacity"] = {"mode": "prefer-free", **capacity}
    return compile_policy(data, source="test.yaml")


ON = policy_with()
DENY = policy_with(whenFull="deny")
OFF = compile_policy(yaml.safe_load(default_policy_text()))


def node(name="n1", alloc=None, labels=None, taints=(), ready=True, unschedulable=False):
    return {
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/gpu.product": PRODUCT, "nvidia.com/mig.capable": "true", **(labels or {})},
        },
        "spec": {"taints": list(taints), **({"unschedulable": True} if unschedulable else {})},
        "status": {
            "allocatable": {"cpu": "8", **{k: str(v) for k, v in (alloc or {}).items()}},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def held(name, resource, node_name="", namespace="t", phase="Running", assigned=None, generate_name=None):
    meta = {"name": name, "namespace": namespace, "creationTimestamp": "2026-01-01T00:00:10Z"}
    if assigned:
        meta["annotations"] = {"gpu-rightsizer.io/assigned-profile": assigned}
    if generate_name:
        meta["generateName"] = generate_name
    return {
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            **({"nodeName": node_name} if node_name else {}),
            "containers": [{"name": "c", "resources": {"limits": {resource: "1"}}}],
        },
        "status": {"phase": phase},
    }


def gpu_pod(memory="5Gi", **extra_annotations):
    return {
        "metadata": {
            "name": "p",
            "namespace": "t",
            "annotations": {"gpu-rightsizer.io/gpu-memory": memory, **extra_annotations},
        },
        "spec": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
    }


LAYOUT = {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-2g.20gb": 1, "nvidia.com/mig-3g.40gb": 1}


def read(nodes, pods=(), now=100.0, observed=100.0, reserved=None):
    return cap.CapacityRead(cap.build_view(nodes, pods, observed), now, reserved or {})


def test_policy_defaults_off_and_validates():
    assert not OFF.capacity.enabled
    assert ON.capacity.max_staleness == 30.0 and ON.capacity.when_full == "static"
    assert policy_with(maxStaleness="2m").capacity.max_staleness == 120.0
    with pytest.raises(PolicyError, match=r"capacity\.mode"):
        policy_with(mode="sometimes")
    with pytest.raises(PolicyError, match=r"capacity\.maxStaleness"):
        policy_with(maxStaleness="30 seconds")
    with pytest.raises(PolicyError, match=r"capacity\.maxStaleness: '0s' is out of range; accepted: 1s to 60m"):
        policy_with(maxStaleness="0s")
    with pytest.raises(PolicyError, match=r"capacity\.whenFull"):
        policy_with(whenFull="wait")
    with pytest.raises(PolicyError, match=r"capacity\.extra"):
        policy_with(extra=1)


def test_sequence_fills_smallest_free_then_larger():
    nodes = [node(alloc=LAYOUT)]
    pods: list[dict] = []
    chosen = []
    for i in range(5):
        d = decide(gpu_pod(), ON, read(nodes, pods))
        chosen.append(d.profile.name)
        pods.append(held(f"p{i}", f"nvidia.com/mig-{d.profile.name}", "n1", assigned=d.profile.name))
    assert chosen == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb", "1g.10gb"]
    last = decide(gpu_pod(), ON, read(nodes, pods))
    assert last.capacity == "full"
    assert "1g.10gb: 0 of 2 free in pool h100-80" in last.message
    assert "nothing free -> static choice nvidia.com/mig-1g.10gb" in last.message


def test_message_names_full_and_chosen():
    d = decide(
        gpu_pod(),
        ON,
        read(
            [node(alloc=LAYOUT)],
            [held("a", "nvidia.com/mig-1g.10gb", "n1")] * 1 + [held("b", "nvidia.com/mig-1g.10gb", "n1")],
        ),
    )
    assert d.capacity == "free"
    assert (
        "capacity: 1g.10gb: 0 of 2 free in pool h100-80; 2g.20gb: 1 free in pool h100-80 -> nvidia.com/mig-2g.20gb"
    ) in d.message
    assert "1g.20gb" not in d.message  # no node offers it: not worth a word
    assert d.message in d.all_warnings
    mutated = mutate_pod(gpu_pod(), d, ON)
    assert mutated["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-2g.20gb": "1"}
    assert mutated["metadata"]["annotations"]["gpu-rightsizer.io/decision"] == d.message


def test_deny_when_full_by_policy():
    pods = [
        held(f"p{i}", r, "n1")
        for i, r in enumerate(["nvidia.com/mig-1g.10gb"] * 2 + ["nvidia.com/mig-2g.20gb", "nvidia.com/mig-3g.40gb"])
    ]
    d = decide(gpu_pod(), DENY, read([node(alloc=LAYOUT)], pods))
    assert d.action == "deny" and d.capacity == "full"
    assert d.message.startswith("no free slice fits: 1g.10gb: 0 of 2 free in pool h100-80")
    assert d.message.endswith("refused (capacity.whenFull: deny)")


def test_no_view_stale_and_off_are_static():
    static = decide(gpu_pod(), OFF)
    assert decide(gpu_pod(), OFF, read([node(alloc={"nvidia.com/mig-3g.40gb": 1})])) == static
    assert decide(gpu_pod(), ON).profile == static.profile
    none = decide(gpu_pod(), ON, cap.CapacityRead(None, 100.0))
    assert none.profile == static.profile and none.capacity == "no-view" and "no capacity view yet" in none.message
    only_big = [node(alloc={"nvidia.com/mig-3g.40gb": 1})]
    fresh = decide(gpu_pod(), ON, read(only_big, now=129.0))
    assert fresh.profile.name == "3g.40gb"
    stale = decide(gpu_pod(), ON, read(only_big, now=131.0))
    assert stale.profile == static.profile and stale.capacity == "stale"
    assert "capacity view is 31s old (capacity.maxStaleness 30s), not trusted; static choice" in stale.message


def test_explicit_profile_is_not_moved():
    d = decide(
        gpu_pod(**{"gpu-rightsizer.io/profile": "1g.10gb"}), ON, read([node(alloc={"nvidia.com/mig-3g.40gb": 1})])
    )
    assert d.profile.name == "1g.10gb" and d.capacity == ""


@pytest.mark.parametrize(
    "change",
    [
        {"ready": False},
        {"unschedulable": True},
        {"labels": {"nvidia.com/mig.capable": "false"}},
        {"labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}},
        {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]},
    ],
)
def test_nodes_the_pod_cannot_land_on_do_not_count(change):
    nodes = [
        node("small", alloc={"nvidia.com/mig-1g.10gb": 1}, **change),
        node("big", alloc={"nvidia.com/mig-3g.40gb": 1}),
    ]
    assert decide(gpu_pod(), ON, read(nodes)).profile.name == "3g.40gb"


def test_tolerated_taints_and_prefer_no_schedule_count():
    tainted = [
        node(
            alloc={"nvidia.com/mig-1g.10gb": 1},
            taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        )
    ]
    assert decide(gpu_pod(), ON, read(tainted)).profile.name == "1g.10gb"  # the policy's toleration
    soft = [node(alloc={"nvidia.com/mig-1g.10gb": 1}, taints=[{"key": "x", "effect": "PreferNoSchedule"}])]
    assert decide(gpu_pod(), ON, read(soft)).profile.name == "1g.10gb"
    own = gpu_pod()
    own["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    dedicated = [
        node(alloc={"nvidia.com/mig-1g.10gb": 1}, taints=[{"key": "dedicated", "value": "x", "effect": "NoExecute"}])
    ]
    assert decide(own, ON, read(dedicated)).profile.name == "1g.10gb"


def test_pending_admitted_pods_and_reservations_hold_slices():
    nodes = [node(alloc=LAYOUT)]
    waiting = [held(f"w{i}", "nvidia.com/mig-1g.10gb", assigned="1g.10gb") for i in range(2)]
    assert decide(gpu_pod(), ON, read(nodes, waiting)).profile.name == "2g.20gb"
    # a pending pod without our annotation does not hold a slice yet (the scheduler may put it anywhere)
    foreign = [held("f", "nvidia.com/mig-1g.10gb")]
    assert decide(gpu_pod(), ON, read(nodes, foreign)).profile.name == "1g.10gb"
    reserved = {("nvidia.com/mig-1g.10gb", "1g.10gb"): 2, ("nvidia.com/mig-2g.20gb", "2g.20gb"): 1}
    assert decide(gpu_pod(), ON, read(nodes, reserved=reserved)).profile.name == "3g.40gb"
    # terminal pods free their slice
    done = [held(f"d{i}", "nvidia.com/mig-1g.10gb", "n1", phase="Succeeded") for i in range(2)]
    assert decide(gpu_pod(), ON, read(nodes, done)).profile.name == "1g.10gb"


def test_single_strategy():
    data = yaml.safe_load(default_policy_text())
    data["pools"][0]["strategy"] = "single"
    data["capacity"] = {"mode": "prefer-free"}
    single = compile_policy(data)
    nodes = [
        node("a", alloc={"nvidia.com/gpu": 7}, labels={"nvidia.com/gpu.product": f"{PRODUCT}-MIG-1g.10gb"}),
        node("b", alloc={"nvidia.com/gpu": 2}, labels={"nvidia.com/gpu.product": f"{PRODUCT}-MIG-3g.40gb"}),
    ]
    pods = [held(f"p{i}", "nvidia.com/gpu", "a") for i in range(7)]
    d = decide(gpu_pod(), single, read(nodes, pods))
    assert d.profile.name == "3g.40gb"
    assert f"2 free in pool h100-80 -> {PRODUCT}-MIG-3g.40gb" in d.message
    assert decide(gpu_pod(), single, read(nodes)).profile.name == "1g.10gb"


def test_tally_tracks_updates_and_deletes():
    tally = cap.ClusterTally()
    tally.set_node(node(alloc=LAYOUT))
    pod = held("p", "nvidia.com/mig-1g.10gb", assigned="1g.10gb", generate_name="job-")
    tally.set_pod(pod)
    v = tally.snapshot(1.0)
    assert v.pending == {("nvidia.com/mig-1g.10gb", "1g.10gb"): 1} and ("t", "p") in v.admitted
    pod["spec"]["nodeName"] = "n1"
    tally.set_pod(pod)
    v = tally.snapshot(2.0)
    assert v.pending == {} and dict(v.used) == {"n1": {"nvidia.com/mig-1g.10gb": 1}}
    pod["status"]["phase"] = "Succeeded"
    tally.set_pod(pod)
    v = tally.snapshot(3.0)
    assert dict(v.used) == {} and v.admitted == frozenset() and v.generated == {} and v.pods == 0
    tally.set_node({**node(), "status": {"allocatable": {"cpu": "4"}}})
    assert tally.snapshot(4.0).nodes == ()


def test_settle_reservations():
    view = cap.build_view(
        [],
        [
            held("named", "nvidia.com/mig-1g.10gb", assigned="1g.10gb"),
            held("job-abc", "nvidia.com/mig-1g.10gb", assigned="1g.10gb", generate_name="job-"),
        ],
        20.0,
    )
    key = ("nvidia.com/mig-1g.10gb", "1g.10gb")
    rs = [
        cap.Reservation("t", "named", "", key, 10.0),
        cap.Reservation("t", "", "job-", key, 10.5),
        cap.Reservation("t", "", "job-", key, 10.6),  # only one job- pod shown: one stays
        cap.Reservation("t", "other", "", key, 1.0),  # older than the ttl
    ]
    kept = cap.settle(rs, view, now=20.0, ttl=15.0)
    assert kept == [rs[2]]
    assert cap.reserved_counts(kept) == {key: 1}


def test_split_objects_reads_kubectl_lists():
    data = {
        "kind": "List",
        "items": [{"kind": "Node", "metadata": {"name": "n"}}, {"kind": "Pod", "metadata": {"name": "p"}}],
    }
    nodes, pods = cap.split_objects([data, {"kind": "PodList", "items": [{"metadata": {"name": "q"}}]}])
    assert [n["metadata"]["name"] for n in nodes] == ["n"] and [p["metadata"]["name"] for p in pods] == ["p", "q"]


def test_stranded_report():
    pods = [held(f"p{i}", "nvidia.com/mig-1g.10gb", "n1") for i in range(2)] + [
        held("w", "nvidia.com/mig-1g.10gb", assigned="1g.10gb")
    ]
    rows = {r.profile: r for r in cap.profile_use(cap.build_view([node(alloc=LAYOUT)], pods, 0.0), ON)}
    assert (rows["1g.10gb"].total, rows["1g.10gb"].free, rows["1g.10gb"].waiting) == (2, 0, 1)
    assert rows["2g.20gb"].stranded == 1 and rows["3g.40gb"].stranded == 1


# --- properties ---------------------------------------------------------------------

PROFILES = [p for p in ON.pools[0].profiles]
layouts = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from([f"nvidia.com/mig-{p.name}" for p in PROFILES]), st.integers(0, 3), max_size=4),
        st.booleans(),
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(layouts, st.integers(1, 80), st.lists(st.sampled_from(PROFILES), max_size=6), st.booleans())
def test_choice_fits_and_is_smallest_free(nodes_spec, need_gib, used_profiles, stale):
    nodes = [node(f"n{i}", alloc=alloc, ready=ready) for i, (alloc, ready) in enumerate(nodes_spec)]
    pods = [held(f"u{i}", f"nvidia.com/mig-{p.name}", "n0") for i, p in enumerate(used_profiles)]
    r = read(nodes, pods, now=200.0 if stale else 100.0)
    pod = gpu_pod(f"{need_gib}Gi")
    d = decide(pod, ON, r)
    static = decide(pod, ON)
    need = MemoryNeed(need_gib * 1024**3, "")
    if static.action != "rewrite":
        assert d.action == static.action
        return
    assert need.fits(d.profile)  # never a profile that does not fit
    if stale:
        assert d.profile == static.profile and d.capacity == "stale"
        return
    supply = r.view.supply(ON)

    def free(p):
        key = cap.slice_key(ON.pools[0], p)
        return max(0, sum(g.free for g in supply[("h100-80", p.name)]) - r.view.pending.get(key, 0))

    fitting_free = [p for p in PROFILES if need.fits(p) and free(p) > 0]
    if fitting_free:
        smallest = min(p.memory_mib for p in fitting_free)
        assert d.profile.memory_mib == smallest and free(d.profile) > 0  # never larger than needed
        assert d.capacity == "free"
    else:
        assert d.profile == static.profile and d.capacity == "full"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(LAYOUT)), max_size=8))
def test_tally_equals_fresh_build(resources):
    """Adding and removing pods incrementally gives the view a fresh build gives."""
    tally = cap.ClusterTally()
    tally.set_node(node(alloc=LAYOUT))
    pods = [held(f"p{i}", r, "n1" if i % 2 else "", assigned="1g.10gb") for i, r in enumerate(resources)]
    for p in pods:
        tally.set_pod(p)
    for p in pods[::3]:
        tally.remove_pod(("t", p["metadata"]["name"]))
    kept = [p for i, p in enumerate(pods) if i % 3]
    a, b = tally.snapshot(0.0), cap.build_view([node(alloc=LAYOUT)], kept, 0.0)
    assert (a.used, a.pending, a.admitted, a.pods) == (b.used, b.pending, b.admitted, b.pods)


def _single_and_mixed() -> object:
    data = yaml.safe_load(default_policy_text())
    single = dict(data["pools"][0], name="single-pool", strategy="single")
    data["pools"].append(single)
    data["capacity"] = {"mode": "prefer-free"}
    return compile_policy(data)


TWO_POOLS = _single_and_mixed()
node_specs = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from([*LAYOUT, "nvidia.com/gpu"]), st.integers(0, 7), max_size=4),
        st.sampled_from(["", "-MIG-1g.10gb", "-MIG-3g.40gb", "-MIG-2g.20gb"]),
        st.booleans(),  # ready
        st.booleans(),  # unschedulable
        st.sampled_from([(), ({"key": "gpu", "value": "yes", "effect": "NoSchedule"},)]),
        st.integers(0, 3),  # bound pods on the node, each holding one of its resources
    ),
    max_size=6,
)


@settings(max_examples=80, deadline=None)
@given(node_specs)
def test_supply_is_the_per_profile_count_of_matching_nodes(specs):
    """The one-pass supply equals counting each (pool, profile) over every node on its own."""
    nodes, pods = [], []
    for i, (alloc, suffix, ready, unschedulable, taints, bound) in enumerate(specs):
        name = f"n{i}"
        nodes.append(
            node(
                name,
                alloc=alloc,
                labels={"nvidia.com/gpu.product": PRODUCT + suffix},
                taints=taints,
                ready=ready,
                unschedulable=unschedulable,
            )
        )
        resources = sorted(alloc)
        pods += [held(f"{name}-p{j}", resources[j % len(resources)], name) for j in range(bound if resources else 0)]
    view = cap.build_view(nodes, pods, 0.0)
    for policy in (ON, TWO_POOLS):
        expected = {}
        for pool in policy.pools:
            for profile in pool.profiles:
                resource = cap.slice_key(pool, profile)[0]
                required = profile_node_requirements(policy, pool, profile)
                groups: dict = {}
                for n in view.nodes:
                    have = n.allocatable.get(resource, 0)
                    if have and n.usable and all(cap.matches(n.labels, r) for r in required):
                        used = view.used.get(n.name, {}).get(resource, 0)
                        total, free = groups.get(n.taints, (0, 0))
                        groups[n.taints] = (total + have, free + max(0, have - used))
                expected[(pool.name, profile.name)] = groups
        got = {k: {g.taints: (g.total, g.free) for g in v} for k, v in view.supply(policy).items()}
        assert got == expected


tally_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("node"),
            st.integers(0, 3),
            st.dictionaries(st.sampled_from(list(LAYOUT)), st.integers(0, 3), max_size=3),
            st.booleans(),
            st.sampled_from([(), ({"key": "gpu", "value": "yes", "effect": "NoSchedule"},)]),
        ),
        st.tuples(st.just("remove-node"), st.integers(0, 3)),
        st.tuples(st.just("pod"), st.integers(0, 5), st.integers(-1, 3), st.sampled_from(list(LAYOUT))),
        st.tuples(st.just("remove-pod"), st.integers(0, 5)),
        st.tuples(
            st.just("snapshot"),
        ),
    ),
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(tally_ops)
def test_a_view_updated_from_the_last_one_equals_one_built_afresh(ops):
    """Each view's supply is the previous view's updated for the nodes that changed; after
    any sequence of node and pod changes it equals a pass over every node."""
    tally = cap.ClusterTally()
    observed = 0.0

    def check():
        nonlocal observed
        observed += 1
        view = tally.snapshot(observed)
        updated = {k: {g.taints: (g.total, g.free) for g in v} for k, v in view.supply(ON).items()}
        afresh = replace(view, _index={}, _basis=[])
        expected = {k: {g.taints: (g.total, g.free) for g in v} for k, v in afresh.supply(ON).items()}
        assert updated == expected
        # ...and the per-namespace sums the quota view reads are those of the pods kept
        held: dict = {}
        for (namespace, _), record in tally.pods.items():
            for resource, n in record.requests:
                held.setdefault(namespace, {})[resource] = held.get(namespace, {}).get(resource, 0) + n
        assert tally.held == held

    for op in ops:
        if op[0] == "node":
            _, i, alloc, ready, taints = op
            tally.set_node(node(f"n{i}", alloc=alloc, ready=ready, taints=taints))
        elif op[0] == "remove-node":
            tally.remove_node(f"n{op[1]}")
        elif op[0] == "pod":
            _, i, on, resource = op
            tally.set_pod(held(f"p{i}", resource, f"n{on}" if on >= 0 else "", assigned="1g.10gb"))
        elif op[0] == "remove-pod":
            tally.remove_pod(("t", f"p{op[1]}"))
        else:
            check()
    check()
