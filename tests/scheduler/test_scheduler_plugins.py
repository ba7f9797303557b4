"""Each filter and score plugin on its own, then the assembled pipeline (kube-scheduler semantics)."""

from __future__ import annotations

from _sched_factories import make_node, make_pod

from controlplane.scheduler import NodeInfo, PodInfo, Scheduler, Snapshot
from controlplane.scheduler._plugins import (
    InterPodAffinity,
    InterPodAffinityScore,
    LeastAllocated,
    NodeAffinity,
    NodeAffinityScore,
    NodePorts,
    NodeReady,
    NodeResourcesFit,
    NodeUnschedulable,
    SelectorSpread,
    TaintToleration,
)


def snapshot(nodes: list[dict], pods: list[dict] = ()) -> Snapshot:
    snap = Snapshot()
    for n in nodes:
        snap.upsert_node(n)
    for p in pods:
        snap.add_pod(p)
    return snap


def run_filter(plugin, pod: dict, snap: Snapshot, node: str):
    info = PodInfo.from_pod(pod)
    state = plugin.prepare(info, snap)
    if state is None:
        return None
    return plugin.filter(info, state, snap.nodes[node])


def test_node_unschedulable_rejects_cordoned_node_unless_tolerated():
    snap = snapshot([make_node("n1", unschedulable=True)])
    assert run_filter(NodeUnschedulable(), make_pod("p"), snap, "n1") == ("node(s) were unschedulable",)
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert run_filter(NodeUnschedulable(), make_pod("p", tolerations=tol), snap, "n1") is None


def test_node_ready_rejects_not_ready_node():
    snap = snapshot([make_node("up"), make_node("down", ready=False)])
    assert run_filter(NodeReady(), make_pod("p"), snap, "up") is None
    assert run_filter(NodeReady(), make_pod("p"), snap, "down") == ("node(s) were not ready",)


def test_resources_fit_counts_bound_pods_requests():
    snap = snapshot(
        [make_node("n1", cpu="2", memory="1Gi", pods="3")],
        [make_pod("a", cpu="1500m", memory="512Mi", node_name="n1")],
    )
    fit = NodeResourcesFit()
    assert run_filter(fit, make_pod("p", cpu="500m", memory="512Mi"), snap, "n1") is None
    assert run_filter(fit, make_pod("p", cpu="501m"), snap, "n1") == ("Insufficient cpu",)
    assert run_filter(fit, make_pod("p", cpu="1", memory="1Gi"), snap, "n1") == (
        "Insufficient cpu",
        "Insufficient memory",
    )
    snap.add_pod(make_pod("b", node_name="n1"))
    snap.add_pod(make_pod("c", node_name="n1"))
    assert run_filter(fit, make_pod("p"), snap, "n1") == ("Too many pods",)


def test_finished_pods_release_their_resources():
    done = make_pod("a", cpu="2", node_name="n1")
    done["status"]["phase"] = "Succeeded"
    snap = snapshot([make_node("n1", cpu="2")], [done])
    assert run_filter(NodeResourcesFit(), make_pod("p", cpu="2"), snap, "n1") is None


def test_node_ports_conflict_on_same_protocol_and_port():
    snap = snapshot([make_node("n1")], [make_pod("a", host_port=8080, node_name="n1")])
    assert run_filter(NodePorts(), make_pod("p", host_port=8080), snap, "n1") == (
        "node(s) didn't have free ports for the requested pod ports",
    )
    assert run_filter(NodePorts(), make_pod("p", host_port=8081), snap, "n1") is None
    snap.remove_pod("default/a")
    assert run_filter(NodePorts(), make_pod("p", host_port=8080), snap, "n1") is None


def test_taints_repel_unless_tolerated():
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    snap = snapshot([make_node("n1", taints=[taint])])
    assert run_filter(TaintToleration(), make_pod("p"), snap, "n1") == (
        "node(s) had untolerated taint {dedicated: gpu}",
    )
    equal = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert run_filter(TaintToleration(), make_pod("p", tolerations=equal), snap, "n1") is None
    wrong_value = [{"key": "dedicated", "operator": "Equal", "value": "cpu"}]
    assert run_filter(TaintToleration(), make_pod("p", tolerations=wrong_value), snap, "n1")
    exists_all = [{"operator": "Exists"}]
    assert run_filter(TaintToleration(), make_pod("p", tolerations=exists_all), snap, "n1") is None


def test_prefer_no_schedule_taint_does_not_filter():
    snap = snapshot([make_node("n1", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])])
    assert run_filter(TaintToleration(), make_pod("p"), snap, "n1") is None


def test_node_selector_and_required_affinity():
    snap = snapshot([make_node("a", labels={"zone": "x", "gen": "5"}), make_node("b", labels={"zone": "y"})])
    assert run_filter(NodeAffinity(), make_pod("p", node_selector={"zone": "x"}), snap, "a") is None
    assert run_filter(NodeAffinity(), make_pod("p", node_selector={"zone": "x"}), snap, "b") == (
        "node(s) didn't match Pod's node affinity/selector",
    )
    aff = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]},
                ]
            }
        }
    }
    pod = make_pod("p", affinity=aff)
    assert run_filter(NodeAffinity(), pod, snap, "a") is None  # first term (gen > 4)
    assert run_filter(NodeAffinity(), pod, snap, "b") is None  # second term (name)
    notin = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["x"]}]}]
            }
        }
    }
    assert run_filter(NodeAffinity(), make_pod("p", affinity=notin), snap, "a")
    assert run_filter(NodeAffinity(), make_pod("p", affinity=notin), snap, "b") is None


def _pod_term(labels: dict, key: str = "kubernetes.io/hostname") -> dict:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key}


def test_required_pod_anti_affinity_one_per_node():
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_pod_term({"app": "db"})]}}
    snap = snapshot(
        [make_node("a"), make_node("b")],
        [make_pod("db-0", labels={"app": "db"}, affinity=anti, node_name="a")],
    )
    pod = make_pod("db-1", labels={"app": "db"}, affinity=anti)
    assert run_filter(InterPodAffinity(), pod, snap, "a") == ("node(s) didn't match pod anti-affinity rules",)
    assert run_filter(InterPodAffinity(), pod, snap, "b") is None


def test_existing_pods_anti_affinity_is_respected():
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_pod_term({"app": "web"})]}}
    snap = snapshot([make_node("a"), make_node("b")], [make_pod("loner", affinity=anti, node_name="a")])
    pod = make_pod("web", labels={"app": "web"})
    assert run_filter(InterPodAffinity(), pod, snap, "a") == (
        "node(s) didn't satisfy existing pods anti-affinity rules",
    )
    assert run_filter(InterPodAffinity(), pod, snap, "b") is None
    # Another namespace is outside the term's default namespace (the owner pod's).
    assert run_filter(InterPodAffinity(), make_pod("web", namespace="other", labels={"app": "web"}), snap, "a") is None


def test_required_pod_affinity_follows_matching_pods_and_allows_first_of_group():
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_pod_term({"app": "cache"})]}}
    snap = snapshot([make_node("a"), make_node("b")])
    first = make_pod("cache-0", labels={"app": "cache"}, affinity=aff)
    # No cache pod anywhere and the pod matches its own term: it may go anywhere.
    assert run_filter(InterPodAffinity(), first, snap, "a") is None
    stranger = make_pod("web", affinity=aff)
    assert run_filter(InterPodAffinity(), stranger, snap, "a") == ("node(s) didn't match pod affinity rules",)
    snap.add_pod(make_pod("cache-0", labels={"app": "cache"}, node_name="b"))
    assert run_filter(InterPodAffinity(), stranger, snap, "b") is None
    assert run_filter(InterPodAffinity(), stranger, snap, "a")


def scores(plugin, pod: dict, snap: Snapshot) -> dict[str, float]:
    info = PodInfo.from_pod(pod)
    state = plugin.prepare(info, snap)
    assert state is not None
    nodes = [snap.nodes[n] for n in snap.node_order]
    raw = [plugin.score(info, state, n) for n in nodes]
    return {n.name: s for n, s in zip(nodes, plugin.normalize(raw), strict=True)}


def test_preferred_node_affinity_scores_by_weight():
    snap = snapshot([make_node("a", labels={"disk": "ssd"}), make_node("b", labels={"disk": "hdd"})])
    pref = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 20, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}},
            ]
        }
    }
    assert scores(NodeAffinityScore(), make_pod("p", affinity=pref), snap) == {"a": 100.0, "b": 25.0}


def test_preferred_pod_affinity_and_anti_affinity_scores():
    snap = snapshot(
        [make_node("a"), make_node("b"), make_node("c")],
        [make_pod("x", labels={"app": "x"}, node_name="a"), make_pod("y", labels={"app": "y"}, node_name="b")],
    )
    pref = {
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": _pod_term({"app": "x"})}]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": _pod_term({"app": "y"})}]},
    }
    assert scores(InterPodAffinityScore(), make_pod("p", affinity=pref), snap) == {"a": 100.0, "b": 0.0, "c": 50.0}


def test_selector_spread_prefers_nodes_with_fewer_siblings():
    snap = snapshot(
        [make_node("a"), make_node("b"), make_node("c")],
        [make_pod(f"s{i}", owner_uid="rs1", node_name="a") for i in range(2)]
        + [make_pod("s9", owner_uid="rs1", node_name="b"), make_pod("other", owner_uid="rs2", node_name="c")],
    )
    assert scores(SelectorSpread(), make_pod("p", owner_uid="rs1"), snap) == {"a": 0.0, "b": 50.0, "c": 100.0}


def test_least_allocated_prefers_emptier_node():
    snap = snapshot([make_node("a", cpu="4", memory="4Gi"), make_node("b", cpu="4", memory="4Gi")],
                    [make_pod("big", cpu="3", memory="3Gi", node_name="a")])
    s = scores(LeastAllocated(), make_pod("p", cpu="1", memory="1Gi"), snap)
    assert s["b"] == 75.0 and s["a"] == 0.0


def test_fit_error_message_matches_kubernetes_format():
    taint = {"key": "node.kubernetes.io/unreachable", "value": "", "effect": "NoExecute"}
    nodes = [make_node(f"small{i}", cpu="1") for i in range(3)] + [
        make_node(f"gone{i}", cpu="8", taints=[taint]) for i in range(2)
    ]
    snap = snapshot(nodes)
    result = Scheduler(seed=1).schedule(PodInfo.from_pod(make_pod("p", cpu="2")), snap)
    assert result.node is None
    assert result.fit_error.message() == (
        "0/5 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
        "3 Insufficient cpu."
    )


def test_pipeline_picks_the_only_feasible_node_and_assume_consumes_it():
    snap = snapshot([make_node("a", cpu="1"), make_node("b", cpu="2"), make_node("c", cpu="1", ready=False)])
    sched = Scheduler(seed=3)
    pod = PodInfo.from_pod(make_pod("p1", cpu="2"))
    res = sched.schedule(pod, snap)
    assert res.node == "b"
    sched.assume(snap, pod, "b")
    res2 = sched.schedule(PodInfo.from_pod(make_pod("p2", cpu="2")), snap)
    assert res2.node is None
    assert res2.fit_error.message() == "0/3 nodes are available: 1 node(s) were not ready, 2 Insufficient cpu."


def test_replicas_spread_across_nodes():
    snap = snapshot([make_node(f"n{i}") for i in range(4)])
    sched = Scheduler(seed=7)
    for i in range(8):
        pod = PodInfo.from_pod(make_pod(f"r{i}", owner_uid="rs", cpu="100m"))
        res = sched.schedule(pod, snap)
        sched.assume(snap, pod, res.node)
    assert sorted(len(snap.nodes[f"n{i}"].pods) for i in range(4)) == [2, 2, 2, 2]


def test_node_update_keeps_bound_pods_counted():
    snap = snapshot([make_node("a", cpu="2")], [make_pod("x", cpu="2", node_name="a")])
    snap.upsert_node(make_node("a", cpu="2", labels={"new": "label"}))
    info: NodeInfo = snap.nodes["a"]
    assert info.req_cpu == 2000 and "default/x" in info.pods
    # A pod bound to a node the snapshot has not seen yet counts once the node appears.
    snap.add_pod(make_pod("y", cpu="1", node_name="later"))
    snap.upsert_node(make_node("later", cpu="2"))
    assert snap.nodes["later"].req_cpu == 1000


def test_score_all_gives_the_same_numbers_as_score_per_node():
    from controlplane.scheduler._plugins import LeastAllocated, SelectorSpread
    from controlplane.scheduler._snapshot import PodInfo, Snapshot

    snap = Snapshot()
    for i, (cpu, mem) in enumerate([("1", "1Gi"), ("4", "8Gi"), ("0", "0"), ("2", "64Mi")]):
        snap.upsert_node(make_node(f"n{i}", cpu=cpu, memory=mem))
    for i in range(5):  # some room taken, one node over-committed (no negative scores)
        snap.add_pod(make_pod(f"b{i}", cpu="900m", memory="100Mi", node_name=f"n{i % 2 * 3}", owner_uid="rs"))
    pod = PodInfo.from_pod(make_pod("p", cpu="300m", memory="32Mi", owner_uid="rs"))
    nodes = list(snap.nodes.values())
    for plugin in (LeastAllocated(), SelectorSpread()):
        state = plugin.prepare(pod, snap)
        assert plugin.score_all(pod, state, nodes) == [plugin.score(pod, state, n) for n in nodes]


def test_add_weighted_adds_exactly_the_weighted_normalized_scores():
    # The framework's one-pass path must pick as score + normalize + weight did, so the sums
    # are compared bit for bit (==), not approximately.
    snap = Snapshot()
    for i, (cpu, mem) in enumerate([("1", "1Gi"), ("4", "8Gi"), ("0", "0"), ("2", "64Mi"), ("3", "3Gi")]):
        snap.upsert_node(make_node(f"n{i}", cpu=cpu, memory=mem))
    for i in range(7):  # uneven sibling counts, one node over-committed
        snap.add_pod(make_pod(f"b{i}", cpu="700m", memory="300Mi", node_name=f"n{i % 3 * 2}", owner_uid="rs"))
    nodes = list(snap.nodes.values())
    totals = [0.0, 12.5, 1 / 3, 7.0, 99.9]
    for owner in ("rs", "other"):  # siblings on some nodes / on none (every node alike)
        pod = PodInfo.from_pod(make_pod("p", cpu="300m", memory="32Mi", owner_uid=owner))
        for plugin in (SelectorSpread(), LeastAllocated()):
            state = plugin.prepare(pod, snap)
            normalized = plugin.normalize(plugin.score_all(pod, state, nodes))
            expected = [t + plugin.weight * s for t, s in zip(totals, normalized, strict=True)]
            assert plugin.add_weighted(pod, state, nodes, totals) == expected


def test_the_scheduler_walks_the_nodes_the_snapshot_has_now():
    # The scheduler reads the nodes in order from a list the snapshot keeps: a node added,
    # replaced (cordoned) or removed since the last pod must count for the next one.
    snap = snapshot([make_node("a"), make_node("b")])
    sched = Scheduler(seed=3, percentage_of_nodes_to_score=100)
    assert sched.schedule(PodInfo.from_pod(make_pod("p1")), snap).node in {"a", "b"}
    snap.upsert_node(make_node("a", unschedulable=True))
    snap.remove_node("b")
    snap.upsert_node(make_node("c"))
    result = sched.schedule(PodInfo.from_pod(make_pod("p2")), snap)
    assert result.node == "c" and result.evaluated == 2
    assert [info.name for info in snap.ordered_nodes()] == ["a", "c"]
    snap.remove_node("c")
    result = sched.schedule(PodInfo.from_pod(make_pod("p3")), snap)
    assert result.node is None and result.fit_error is not None
    assert result.fit_error.message() == "0/1 nodes are available: 1 node(s) were unschedulable."
