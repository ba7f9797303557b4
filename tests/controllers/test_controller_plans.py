"""Pure reconcile decisions of each controller (sample-controller style: desired + actual -> plan)."""

from __future__ import annotations

import json
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.controllers._deployment_plan import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    plan_deployment,
    surge_and_unavailable,
    template_hash,
)
from controlplane.controllers._endpoints_plan import HOST_PORTS_ANNOTATION, build_subsets
from controlplane.controllers._gc_plan import FOREGROUND, ORPHAN, ObjRef, plan_gc
from controlplane.controllers._nodelifecycle_plan import (
    LeaseObserver,
    TokenBucket,
    clear_unreachable,
    eviction_delay,
    evictions_allowed,
    mark_unreachable,
    pod_not_ready,
)
from controlplane.controllers._replicaset_plan import plan_replicaset, pod_from_template

NOW = "2026-01-01T00:00:00Z"


# -- ReplicaSet -------------------------------------------------------------------------------


def rs(replicas: int, uid: str = "rs-uid", generation: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-abc", "namespace": "default", "uid": uid, "generation": generation},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }


def pod(name: str, *, owner: str | None = "rs-uid", node: str | None = "n1", ready: bool = True,
        phase: str = "Running", created: str = "2026-01-01T00:00:00Z", labels: dict | None = None) -> dict:
    meta = {"name": name, "namespace": "default", "uid": f"u-{name}", "labels": labels if labels is not None else {"app": "web"},
            "creationTimestamp": created}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "web-abc", "uid": owner, "controller": True}]
    spec = {"containers": [{"name": "c", "image": "i"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, "status": {
        "phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_replicaset_creates_missing_pods_and_ignores_finished_ones():
    pods = [pod("a"), pod("b", phase="Failed"), pod("c", owner="someone-else")]
    plan = plan_replicaset(rs(3), pods)
    assert plan.create == 2 and plan.delete == []
    assert plan.status["replicas"] == 1 and plan.status["readyReplicas"] == 1
    assert plan.status["observedGeneration"] == 1


def test_replicaset_deletes_unscheduled_then_not_ready_then_newest():
    pods = [
        pod("old-ready", created="2026-01-01T00:00:00Z"),
        pod("new-ready", created="2026-01-02T00:00:00Z"),
        pod("not-ready", ready=False),
        pod("unscheduled", node=None, phase="Pending", ready=False),
    ]
    plan = plan_replicaset(rs(1), pods)
    assert [p["metadata"]["name"] for p in plan.delete] == ["unscheduled", "not-ready", "new-ready"]


def test_replicaset_adopts_matching_orphans():
    plan = plan_replicaset(rs(1), [pod("orphan", owner=None), pod("stranger", owner=None, labels={"app": "db"})])
    assert [p["metadata"]["name"] for p in plan.adopt] == ["orphan"]


def test_replicaset_status_counts_labeled_ready_and_available_pods():
    from datetime import UTC, datetime

    def since(p: dict, when: str) -> dict:
        p["status"]["conditions"][0]["lastTransitionTime"] = when
        return p

    pods = [
        since(pod("old-ready"), "2026-01-01T00:00:00Z"),
        since(pod("new-ready"), "2026-01-01T00:00:50Z"),
        pod("ready-no-time"),
        pod("not-ready", ready=False),
        since(pod("relabeled", labels={"app": "web", "extra": "x"}), "2026-01-01T00:00:00Z"),
        pod("mislabeled", labels={"app": "other"}),  # still owned: counted, but not fully labeled
        pod("done", phase="Succeeded"),  # finished: not counted at all
    ]
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    status = plan_replicaset(rs(6), pods, now).status
    assert status == {"replicas": 6, "fullyLabeledReplicas": 5, "readyReplicas": 5, "availableReplicas": 5,
                      "observedGeneration": 1}
    # With minReadySeconds a ready pod is available only that long after it became ready (and
    # one whose Ready condition has no time never is).
    slow = rs(6)
    slow["spec"]["minReadySeconds"] = 30
    status = plan_replicaset(slow, pods, now).status
    assert (status["readyReplicas"], status["availableReplicas"]) == (5, 2)


def test_pod_from_template_has_owner_labels_and_generate_name():
    p = pod_from_template(rs(1))
    assert p["metadata"]["generateName"] == "web-abc-"
    assert p["metadata"]["labels"] == {"app": "web"}
    ref = p["metadata"]["ownerReferences"][0]
    assert ref["uid"] == "rs-uid" and ref["controller"] and ref["kind"] == "ReplicaSet"


@given(
    replicas=st.integers(0, 20),
    have=st.lists(st.tuples(st.booleans(), st.booleans(), st.sampled_from(["Pending", "Running", "Failed"])), max_size=30),
)
def test_property_replicaset_converges_to_exactly_replicas(replicas, have):
    """Applying plans until nothing changes leaves exactly `replicas` active pods, never more."""
    pods = [pod(f"p{i}", node="n" if sched else None, ready=ready, phase=phase)
            for i, (sched, ready, phase) in enumerate(have)]
    for step in range(3):
        plan = plan_replicaset(rs(replicas), pods)
        gone = {id(p) for p in plan.delete}
        pods = [p for p in pods if id(p) not in gone]
        pods += [pod(f"new{step}-{i}", node=None, phase="Pending", ready=False) for i in range(plan.create)]
    active = [p for p in pods if p["status"]["phase"] not in ("Failed", "Succeeded")]
    assert len(active) == replicas
    assert plan_replicaset(rs(replicas), pods).create == 0


# -- Deployment -------------------------------------------------------------------------------


def deployment(replicas: int, image: str = "v1", surge="25%", unavailable="25%", strategy="RollingUpdate") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": strategy, "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    }


def materialize(created: dict, n: int = 0) -> dict:
    out = json.loads(json.dumps(created))
    out["metadata"]["uid"] = "rs-" + out["metadata"]["name"]
    out["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:{n:02d}Z"
    out["status"] = {"replicas": 0, "availableReplicas": 0, "readyReplicas": 0}
    return out


def test_surge_rounds_up_and_unavailable_down():
    assert surge_and_unavailable(deployment(10)) == (3, 2)
    assert surge_and_unavailable(deployment(3, surge=0, unavailable=0)) == (0, 1)


def test_first_sync_creates_new_replicaset_with_hash_and_revision():
    plan = plan_deployment(deployment(3), [], NOW)
    rs_new = plan.create
    h = template_hash(deployment(3)["spec"]["template"])
    assert rs_new["metadata"]["name"] == f"web-{h}"
    assert rs_new["spec"]["replicas"] == 3
    assert rs_new["spec"]["template"]["metadata"]["labels"][HASH_LABEL] == h
    assert rs_new["spec"]["selector"]["matchLabels"][HASH_LABEL] == h
    assert rs_new["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
    assert plan.deployment_revision == "1"
    prog = next(c for c in plan.status["conditions"] if c["type"] == "Progressing")
    assert prog["reason"] == "NewReplicaSetCreated"


def test_complete_rollout_reports_new_replicaset_available():
    r = materialize(plan_deployment(deployment(2), [], NOW).create)
    r["status"] = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    plan = plan_deployment(deployment(2), [r], NOW)
    assert plan.create is None and plan.scale == {}
    assert plan.status["updatedReplicas"] == 2 and plan.status["availableReplicas"] == 2
    conds = {c["type"]: c for c in plan.status["conditions"]}
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Available"]["status"] == "True"
    # A second identical sync produces an identical status (no write loop).
    d = deployment(2)
    d["status"] = plan.status
    assert plan_deployment(d, [r], "2026-01-01T00:05:00Z").status == plan.status


def test_recreate_scales_old_to_zero_before_creating_new():
    old = materialize(plan_deployment(deployment(2), [], NOW).create)
    old["status"] = {"replicas": 2, "availableReplicas": 2}
    plan = plan_deployment(deployment(2, image="v2", strategy="Recreate"), [old], NOW)
    assert plan.scale == {old["metadata"]["name"]: 0}
    assert plan.create is not None and plan.create["spec"]["replicas"] == 0


def test_rollback_bumps_revision_of_restored_replicaset():
    v1 = materialize(plan_deployment(deployment(1), [], NOW).create, 0)
    v2 = materialize(plan_deployment(deployment(1, image="v2"), [v1], NOW).create, 1)
    v2["metadata"]["annotations"][REVISION_ANNOTATION] = "2"
    plan = plan_deployment(deployment(1), [v1, v2], NOW)  # template back to v1
    assert plan.set_revision == {v1["metadata"]["name"]: 3}
    assert plan.deployment_revision == "3"


def test_rollback_template_with_null_creation_timestamp_matches_old_replicaset():
    """kubectl rollout undo sends metadata.creationTimestamp: null; it must not count as a change."""
    v1 = materialize(plan_deployment(deployment(1), [], NOW).create, 0)
    v2 = materialize(plan_deployment(deployment(1, image="v2"), [v1], NOW).create, 1)
    v2["metadata"]["annotations"][REVISION_ANNOTATION] = "2"
    undo = deployment(1)
    undo["spec"]["template"]["metadata"]["creationTimestamp"] = None
    plan = plan_deployment(undo, [v1, v2], NOW)
    assert plan.create is None
    assert plan.set_revision == {v1["metadata"]["name"]: 3}


def test_rollout_without_progress_past_the_deadline_fails():
    """progressDeadlineSeconds: kubectl rollout status stops waiting on ProgressDeadlineExceeded."""
    d = deployment(2)
    d["spec"]["progressDeadlineSeconds"] = 60
    r = materialize(plan_deployment(d, [], NOW).create)
    r["status"] = {"replicas": 2, "availableReplicas": 0}
    first = plan_deployment(d, [r], "2026-01-01T00:00:10Z")
    assert first.recheck_after is not None and 50 <= first.recheck_after <= 62
    d["status"] = first.status
    stuck = plan_deployment(d, [r], "2026-01-01T00:00:50Z")
    assert stuck.status == first.status  # nothing changed: no write
    d["status"] = stuck.status
    late = plan_deployment(d, [r], "2026-01-01T00:01:30Z")
    prog = next(c for c in late.status["conditions"] if c["type"] == "Progressing")
    assert (prog["status"], prog["reason"]) == ("False", "ProgressDeadlineExceeded")
    # Progress again (a pod became available) resumes the rollout.
    d["status"] = late.status
    r["status"] = {"replicas": 2, "availableReplicas": 1}
    prog = next(c for c in plan_deployment(d, [r], "2026-01-01T00:01:40Z").status["conditions"]
                if c["type"] == "Progressing")
    assert (prog["status"], prog["reason"]) == ("True", "ReplicaSetUpdated")


@settings(max_examples=60, deadline=None)
@given(
    replicas=st.integers(1, 12),
    surge=st.sampled_from([0, 1, 2, "25%", "50%"]),
    unavailable=st.sampled_from([0, 1, 3, "25%"]),
    ready_order=st.lists(st.integers(0, 1000), min_size=200, max_size=200),
)
def test_property_rolling_update_respects_surge_and_unavailable(replicas, surge, unavailable, ready_order):
    """During a rollout, total pods <= replicas + maxSurge and available >= replicas - maxUnavailable."""
    d1 = deployment(replicas, surge=surge, unavailable=unavailable)
    v1 = materialize(plan_deployment(d1, [], NOW).create)
    v1["status"] = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
    rss = [v1]
    d2 = deployment(replicas, image="v2", surge=surge, unavailable=unavailable)
    max_surge, max_unavail = surge_and_unavailable(d2)
    for step, pick in enumerate(ready_order):
        plan = plan_deployment(d2, rss, NOW)
        if plan.create:
            rss.append(materialize(plan.create, step + 1))
        for r in rss:
            name = r["metadata"]["name"]
            if name in plan.scale:
                r["spec"]["replicas"] = plan.scale[name]
            # The ReplicaSet controller: pods follow spec at once, removals take unavailable first.
            r["status"]["replicas"] = r["spec"]["replicas"]
            r["status"]["availableReplicas"] = min(r["status"]["availableReplicas"], r["spec"]["replicas"])
        total = sum(r["spec"]["replicas"] for r in rss)
        available = sum(r["status"]["availableReplicas"] for r in rss)
        assert total <= replicas + max_surge
        assert available >= replicas - max_unavail
        # One not-yet-available pod (chosen by hypothesis) becomes available.
        waiting = [r for r in rss if r["status"]["availableReplicas"] < r["spec"]["replicas"]]
        if waiting:
            waiting[pick % len(waiting)]["status"]["availableReplicas"] += 1
    new = next(r for r in rss if r["spec"]["template"]["spec"]["containers"][0]["image"] == "v2")
    assert new["spec"]["replicas"] == replicas and new["status"]["availableReplicas"] == replicas
    assert all(r["spec"]["replicas"] == 0 for r in rss if r is not new)


# -- Endpoints --------------------------------------------------------------------------------


def svc(selector: dict, ports: list[dict]) -> dict:
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": selector, "ports": ports}}


def ep_pod(name: str, host_ip: str | None, ready: bool, *, host_port: int | None = None, reported: dict | None = None,
           labels: dict | None = None) -> dict:
    p = pod(name, ready=ready, labels=labels)
    port = {"containerPort": 80, "name": "http"}
    if host_port:
        port["hostPort"] = host_port
    p["spec"]["containers"][0]["ports"] = [port]
    if host_ip:
        p["status"]["hostIP"] = host_ip
    if reported is not None:
        p["metadata"]["annotations"] = {HOST_PORTS_ANNOTATION: json.dumps(reported)}
    return p


def test_endpoints_use_host_ip_and_reported_host_port():
    pods = [
        ep_pod("a", "127.0.1.1", True, reported={"80/TCP": 31001}),
        ep_pod("b", "127.0.1.2", False, reported={"80/TCP": 31001}),
        ep_pod("c", "127.0.1.3", True, host_port=8080),
        ep_pod("d", None, True, reported={"80/TCP": 31002}),  # not started anywhere yet
        ep_pod("e", "127.0.1.4", True, reported={"80/TCP": 31003}, labels={"app": "db"}),
    ]
    subsets = build_subsets(svc({"app": "web"}, [{"port": 80, "targetPort": "http"}]), pods)
    assert subsets == [
        {"addresses": [{"ip": "127.0.1.3", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "c", "uid": "u-c"}}],
         "ports": [{"port": 8080, "protocol": "TCP"}]},
        {"addresses": [{"ip": "127.0.1.1", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "u-a"}}],
         "notReadyAddresses": [{"ip": "127.0.1.2", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "u-b"}}],
         "ports": [{"port": 31001, "protocol": "TCP"}]},
    ]


def test_endpoints_numeric_target_port_and_no_published_port():
    pods = [ep_pod("a", "127.0.1.1", True, reported={"80/TCP": 31001}), ep_pod("x", "127.0.1.9", True)]
    subsets = build_subsets(svc({"app": "web"}, [{"name": "web", "port": 8000, "targetPort": 80}]), pods)
    assert [a["targetRef"]["name"] for s in subsets for a in s["addresses"]] == ["a"]
    assert subsets[0]["ports"] == [{"name": "web", "port": 31001, "protocol": "TCP"}]


# -- Node lifecycle ---------------------------------------------------------------------------


def test_lease_observer_judges_on_local_clock_and_fresh_leader_gives_full_grace():
    obs = LeaseObserver()
    obs.observe("n1", "2020-01-01T00:00:00Z", now=100.0)  # agent clock is years behind: irrelevant
    assert not obs.unreachable("n1", 107.9, grace=8.0)
    obs.observe("n1", "2020-01-01T00:00:02Z", now=107.0)  # renewed
    assert not obs.unreachable("n1", 114.0, grace=8.0)
    assert obs.unreachable("n1", 115.1, grace=8.0)
    fresh = LeaseObserver()
    fresh.first_sight("n2", now=500.0)
    assert not fresh.unreachable("n2", 507.0, grace=8.0)


def test_mark_unreachable_taints_and_sets_ready_unknown_once():
    node = {"metadata": {"name": "n1"}, "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    spec_change, status_change = mark_unreachable(node, NOW)
    assert spec_change["spec"]["taints"] == [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": NOW}
    ]
    ready = status_change["status"]["conditions"][0]
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    node2 = {**spec_change, "status": status_change["status"]}
    assert mark_unreachable(node2, NOW) == (None, None)
    assert clear_unreachable(node2)["spec"]["taints"] == []


def test_eviction_delay_uses_toleration_seconds_or_default():
    assert eviction_delay(pod("a"), 4.0) == 4.0
    tolerant = pod("b")
    tolerant["spec"]["tolerations"] = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                        "effect": "NoExecute", "tolerationSeconds": 30}]
    assert eviction_delay(tolerant, 4.0) == 30.0
    forever = pod("c")
    forever["spec"]["tolerations"] = [{"operator": "Exists"}]
    assert eviction_delay(forever, 4.0) is None


def test_no_eviction_when_most_nodes_unreachable():
    assert evictions_allowed(5, 2)
    assert not evictions_allowed(5, 3)


def test_token_bucket_limits_eviction_rate():
    bucket = TokenBucket(qps=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)


def test_pods_on_unreachable_node_become_not_ready():
    changed = pod_not_ready(pod("a"), NOW)
    assert changed["status"]["conditions"][0]["status"] == "False"
    assert pod_not_ready(changed, NOW) is None


# -- Garbage collection -----------------------------------------------------------------------


def obj(name: str, uid: str, owners: list[dict] = (), *, deleting: bool = False, finalizers: list[str] = ()) -> dict:
    m = {"name": name, "namespace": "default", "uid": uid, "ownerReferences": list(owners), "finalizers": list(finalizers)}
    if deleting:
        m["deletionTimestamp"] = NOW
    return {"metadata": m}


def ref(o: dict, plural: str = "pods") -> ObjRef:
    return ObjRef(plural, "default", o["metadata"]["name"], o["metadata"]["uid"])


def test_gc_deletes_dependents_of_vanished_owner():
    child = obj("child", "c1", [{"uid": "gone", "kind": "ReplicaSet", "name": "rs"}])
    keeper = obj("keeper", "c2", [{"uid": "gone"}, {"uid": "alive"}])
    alive = obj("alive", "alive")
    plan = plan_gc({ref(child): child, ref(keeper): keeper, ref(alive, "replicasets"): alive})
    assert plan.delete_background == [ref(child)]


def test_gc_foreground_deletes_dependents_then_finalizes_owner():
    owner = obj("rs", "o1", deleting=True, finalizers=[FOREGROUND])
    child = obj("child", "c1", [{"uid": "o1", "blockOwnerDeletion": True}])
    plan = plan_gc({ref(owner, "replicasets"): owner, ref(child): child})
    assert plan.delete_foreground == [ref(child)] and plan.finalize == {}
    plan = plan_gc({ref(owner, "replicasets"): owner})
    assert plan.finalize == {ref(owner, "replicasets"): FOREGROUND}


def test_gc_orphan_removes_references_then_finalizes():
    owner = obj("rs", "o1", deleting=True, finalizers=[ORPHAN])
    child = obj("child", "c1", [{"uid": "o1"}])
    plan = plan_gc({ref(owner, "replicasets"): owner, ref(child): child})
    assert plan.orphan == {ref(child): {"o1"}} and plan.delete_background == []
    orphaned = obj("child", "c1")
    assert plan_gc({ref(owner, "replicasets"): owner, ref(orphaned): orphaned}).finalize == {
        ref(owner, "replicasets"): ORPHAN
    }


def test_gc_passes_only_for_changes_that_can_make_garbage() -> None:
    from controlplane.controllers.gc import GarbageCollector

    gc_ = GarbageCollector(registry=None, informers={})
    standalone = {"metadata": {"name": "c", "namespace": "d", "uid": "1"}}
    gc_._on_change(None, standalone)
    gc_._on_change(standalone, {**standalone, "data": {"x": "y"}})
    assert not gc_._dirty.is_set()  # a burst of ConfigMaps walks no graph
    owned = {"metadata": {**standalone["metadata"], "ownerReferences": [{"uid": "9"}]}}
    for old, new in [(None, owned), (owned, standalone), (standalone, None),
                     (standalone, {"metadata": {**standalone["metadata"], "deletionTimestamp": "t"}})]:
        gc_._dirty = type(gc_._dirty)()
        gc_._on_change(old, new)
        assert gc_._dirty.is_set(), (old, new)


def test_gc_pass_after_a_deletion_judges_only_what_it_concerns() -> None:
    # With 30,000 pods a whole-graph pass per deletion would be most of the leader's CPU: after
    # the first (full) pass, a deletion looks at the dependents of what went away, with their
    # owners, and never at unrelated objects.
    from controlplane.controllers.gc import GarbageCollector

    def o(name: str, uid: str, *owners: str, **extra: Any) -> dict:
        m: dict[str, Any] = {"name": name, "namespace": "d", "uid": uid, **extra}
        if owners:
            m["ownerReferences"] = [{"uid": u, "kind": "ReplicaSet", "apiVersion": "apps/v1",
                                     "name": "x", "blockOwnerDeletion": True} for u in owners]
        return {"metadata": m}

    gc_ = GarbageCollector(registry=None, informers={})
    rs_a, rs_b = o("a", "ra"), o("b", "rb")
    pods = [o(f"pa{i}", f"pa{i}", "ra") for i in range(3)] + [o(f"pb{i}", f"pb{i}", "rb") for i in range(3)]
    for obj in (rs_a, rs_b, *pods):
        gc_._on_change(None, obj, plural="replicasets" if obj in (rs_a, rs_b) else "pods")
    gc_._suspects.clear()
    gc_._on_change(rs_a, None, plural="replicasets")
    judged = gc_.subgraph(gc_._suspects)
    assert {r.name for r in judged} == {"pa0", "pa1", "pa2"}
    assert {r.name for r in plan_gc(judged).delete_background} == {"pa0", "pa1", "pa2"}
    # A foreground deletion of rb: rb with every dependent (blocking), nothing of ra's.
    gc_._suspects.clear()
    deleting = o("b", "rb", deletionTimestamp="t", finalizers=[FOREGROUND])
    gc_._on_change(rs_b, deleting, plural="replicasets")
    judged = gc_.subgraph(gc_._suspects)
    assert {r.name for r in judged} == {"b", "pb0", "pb1", "pb2"}
    plan = plan_gc(judged)
    assert {r.name for r in plan.delete_foreground} == {"pb0", "pb1", "pb2"} and not plan.finalize


def test_event_spam_filter_allows_a_burst_per_object() -> None:
    # client-go's EventSourceObjectSpamFilter: 25 events per involved object, then one per 5 min
    # (a ReplicaSet creating 100 pods records 25 "Created pod" events).
    from controlplane.controllers.events import SPAM_BURST, EventRecorder

    recorder = EventRecorder(registry=None, component="test")
    rs = {"kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "d", "uid": "u1"}}
    other = {"kind": "ReplicaSet", "metadata": {"name": "db", "namespace": "d", "uid": "u2"}}
    for i in range(SPAM_BURST + 5):
        recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: web-{i}")
    recorder.event(other, "Normal", "SuccessfulCreate", "Created pod: db-0")
    assert recorder.filtered == 5
    queued = []
    while True:
        try:
            queued.append(recorder._recv.receive_nowait())
        except trio.WouldBlock:
            break
    assert len(queued) == SPAM_BURST + 1
    assert queued[-1]["involved"]["name"] == "db"
