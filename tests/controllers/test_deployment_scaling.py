"""Scaling a Deployment while a rollout is in progress: proportional scaling.

Kubernetes' documentation (Deployments, "Proportional scaling"): when a Deployment with several
active ReplicaSets is scaled, the additional replicas are spread across them - bigger proportions
go to the ReplicaSets with the most replicas, any leftover goes to the ReplicaSet with the most
replicas, and ReplicaSets with zero replicas are not scaled up. Its example: 10 replicas,
maxSurge=3, maxUnavailable=2, a rollout stuck at 8 old / 5 new, scaled to 15: 3 of the 5 new
replicas go to the old ReplicaSet and 2 to the new one. The sizes a ReplicaSet was scaled for are
the deployment.kubernetes.io/desired-replicas and max-replicas annotations.
"""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.controllers import NodeLifecycleConfig
from controlplane.controllers._deployment_plan import (
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    is_scaling_event,
    max_surge,
    plan_deployment,
    replica_annotations,
    scale_replicasets,
)
from controlplane.leader import LeaderConfig, run_duties
from controlplane.registry import Registry
from raftstore import MemoryStore

NOW = "2026-01-01T00:00:00Z"


def deployment(replicas: int, surge: object = 3, unavailable: object = 2, *, image: str = "v2",
               paused: bool = False, status_replicas: int = 0) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 3},
        "spec": {"replicas": replicas, "paused": paused, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}},
        "status": {"replicas": status_replicas},
    }


def rs(name: str, replicas: int, second: int, *, desired: int | None = None, max_replicas: int | None = None,
       image: str | None = None, available: int = 0) -> dict:
    annotations = {"deployment.kubernetes.io/revision": str(second + 1)}
    if desired is not None:
        annotations[DESIRED_REPLICAS_ANNOTATION] = str(desired)
    if max_replicas is not None:
        annotations[MAX_REPLICAS_ANNOTATION] = str(max_replicas)
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "annotations": annotations,
                     "creationTimestamp": f"2026-01-01T00:00:{second:02d}Z",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                          "uid": "d-uid", "controller": True}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": image or name}]}}},
        "status": {"replicas": replicas, "availableReplicas": available},
    }


# Each case: the Deployment after the scale, (name, size, created second, desired, max annotations)
# of its ReplicaSets (the new one is the last, with image "v2"), and the sizes Kubernetes'
# scale gives them. Worked out by hand from GetProportion: share = round(size * (replicas +
# maxSurge) / max-replicas annotation) - size, capped by what is left to add, largest first.
CASES = {
    # The documentation's example: 5 more over 8 + 5 (max 13 -> 18): +3 old, +2 new.
    "docs: 10 -> 15 mid-rollout": (deployment(15), [("old", 8, 0, 10, 13), ("v2", 5, 1, 10, 13)], {"old": 11, "v2": 7}),
    # Down to 5 (max 8): round(8*8/13)=5, round(5*8/13)=3.
    "10 -> 5 mid-rollout": (deployment(5), [("old", 8, 0, 10, 13), ("v2", 5, 1, 10, 13)], {"old": 5, "v2": 3}),
    "10 -> 0 mid-rollout": (deployment(0), [("old", 8, 0, 10, 13), ("v2", 5, 1, 10, 13)], {"old": 0, "v2": 0}),
    # Three ReplicaSets, maxSurge 25% (10: 3, 20: 5; max 13 -> 25): 12 more. The two of size 4
    # tie: scaling up, the newer one comes first and takes the larger share.
    "three, 10 -> 20, 25%": (deployment(20, "25%", "25%"),
                             [("a", 5, 0, 10, 13), ("b", 4, 1, 10, 13), ("v2", 4, 2, 10, 13)],
                             {"a": 10, "b": 7, "v2": 8}),
    # Every share rounds to nothing: the leftover goes to the largest - the newest of equals
    # when scaling up, the oldest when scaling down.
    "leftover up": (deployment(4, 0, 1), [("a", 1, 0, 3, 3), ("b", 1, 1, 3, 3), ("v2", 1, 2, 3, 3)],
                    {"a": 1, "b": 1, "v2": 2}),
    "leftover down": (deployment(2, 0, 1), [("a", 1, 0, 3, 3), ("b", 1, 1, 3, 3), ("v2", 1, 2, 3, 3)],
                      {"a": 0, "b": 1, "v2": 1}),
    # .5 rounds up as Go's math.Round: 2 * 5 / 4 = 2.5 -> 3 for the first (newest) of equals.
    "half rounds up": (deployment(4, 1, 0), [("old", 2, 0, 3, 4), ("v2", 2, 1, 3, 4)], {"old": 2, "v2": 3}),
    # Without annotations the size before is the Deployment's status.replicas (10 -> 20 + 0).
    "no annotations": (deployment(20, 0, 1, status_replicas=10), [("old", 6, 0, None, None), ("v2", 4, 1, None, None)],
                       {"old": 12, "v2": 8}),
    # An empty ReplicaSet is not scaled up.
    "zero stays zero": (deployment(15), [("older", 0, 0, 10, 13), ("old", 8, 1, 10, 13), ("v2", 5, 2, 10, 13)],
                        {"old": 11, "v2": 7}),
}


def replicasets(specs: list[tuple]) -> list[dict]:
    out = []
    for i, (name, size, second, desired, max_replicas) in enumerate(specs):
        out.append(rs(name, size, second, desired=desired, max_replicas=max_replicas,
                      image="v2" if i == len(specs) - 1 else name))
    return out


@pytest.mark.parametrize("case", CASES)
def test_proportional_scale_of_active_replicasets(case):
    d, specs, want = CASES[case]
    rss = replicasets(specs)
    new, olds = rss[-1], rss[:-1]
    sizes, touched = scale_replicasets(d, new, olds)
    assert sizes == want
    assert touched == {r["metadata"]["name"] for r in rss if r["spec"]["replicas"] > 0}
    # The Deployment's sync takes the same path when an annotation says it was scaled.
    if specs[-1][3] is not None:
        assert is_scaling_event(d, new, olds)
        plan = plan_deployment(d, rss, NOW)
        assert plan.create is None
        assert plan.scale == {n: s for n, s in want.items() if s != next(r for r in specs if r[0] == n)[1]}


def test_one_active_replicaset_takes_the_whole_size_and_a_saturated_new_one_ends_the_old():
    d = deployment(7)
    sizes, _ = scale_replicasets(d, rs("v2", 5, 1, desired=5, max_replicas=8, image="v2"), [rs("old", 0, 0)])
    assert sizes == {"v2": 7}
    # None active (scaled to 0 before): the new one comes back.
    sizes, _ = scale_replicasets(d, rs("v2", 0, 1, desired=0, max_replicas=3, image="v2"), [rs("old", 0, 0)])
    assert sizes == {"v2": 7}
    # The new one has all 7, available: what is left of the old ones goes.
    full = rs("v2", 7, 1, desired=7, max_replicas=10, image="v2", available=7)
    sizes, _ = scale_replicasets(d, full, [rs("old", 2, 0, desired=5, max_replicas=8)])
    assert sizes == {"old": 0}


def test_size_unchanged_by_the_scale_still_records_the_new_deployment_size():
    # 10 -> 11 (max 13 -> 14): the old one takes the one replica, the new one keeps 5 but must
    # say it was scaled for 11, or every sync would see a scaling event and the rollout stall.
    rss = [rs("old", 8, 0, desired=10, max_replicas=13), rs("v2", 5, 1, desired=10, max_replicas=13, image="v2")]
    plan = plan_deployment(deployment(11), rss, NOW)
    assert plan.scale == {"old": 9} and plan.annotate == {"v2"}


def test_no_scaling_event_rolls_on_as_before():
    rss = [rs("old", 8, 0, desired=10, max_replicas=13), rs("v2", 5, 1, desired=10, max_replicas=13, image="v2")]
    assert not is_scaling_event(deployment(10), rss[1], rss[:1])
    rss[0]["status"]["availableReplicas"] = 8
    rss[1]["status"]["availableReplicas"] = 5
    plan = plan_deployment(deployment(10), rss, NOW)
    # the rolling update's own step: 13 available, 8 (10 - maxUnavailable) needed, 5 old go
    assert plan.scale == {"old": 3} and not plan.annotate


def test_paused_deployment_scales_proportionally():
    rss = [rs("old", 8, 0, desired=10, max_replicas=13), rs("v2", 5, 1, desired=10, max_replicas=13, image="v2")]
    plan = plan_deployment(deployment(15, paused=True), rss, NOW)
    assert plan.scale == {"old": 11, "v2": 7}


@st.composite
def rollout_state(draw) -> tuple[int, object, list[int]]:
    """A Deployment size, its maxSurge, and ReplicaSet sizes a rollout can reach under them:
    together at most replicas + maxSurge (the max-replicas annotation every one carries)."""
    before = draw(st.integers(1, 40))
    surge = draw(st.sampled_from([0, 1, 3, "25%", "50%"]))
    room = before + max_surge(deployment(before, surge, 1))
    sizes = []
    for _ in range(draw(st.integers(2, 5))):
        size = draw(st.integers(0, room))
        room -= size
        sizes.append(size)
    return before, surge, sizes


@settings(max_examples=300, deadline=None)
@given(state=rollout_state(), after=st.integers(0, 60))
def test_property_proportional_scale_fills_the_allowed_size(state, after):
    """Adding: the active ReplicaSets together reach replicas + maxSurge, and none shrinks when
    the Deployment grew. Removing: they end at or above replicas + maxSurge (the largest stops at
    zero), and none grows when the Deployment shrank. Never below zero."""
    before, surge, sizes = state
    ann = replica_annotations(deployment(before, surge, 1))
    rss = [rs(f"r{i}", size, i, desired=before, max_replicas=int(ann[MAX_REPLICAS_ANNOTATION]),
              image="v2" if i == len(sizes) - 1 else f"r{i}") for i, size in enumerate(sizes)]
    active = [r for r in rss if r["spec"]["replicas"] > 0]
    if len(active) < 2:
        return  # one or none active: not proportional (tested above)
    d = deployment(after, surge, 1)
    new_sizes, _ = scale_replicasets(d, rss[-1], rss[:-1])
    allowed = int(replica_annotations(d)[MAX_REPLICAS_ANNOTATION]) if after else 0
    total_before = sum(r["spec"]["replicas"] for r in active)
    total_after = sum(new_sizes.values())
    assert set(new_sizes) == {r["metadata"]["name"] for r in active}
    assert all(s >= 0 for s in new_sizes.values())
    grown = [new_sizes[r["metadata"]["name"]] - r["spec"]["replicas"] for r in active]
    if allowed >= total_before:
        assert total_after == allowed
        if after >= before:
            assert min(grown) >= 0
    else:
        assert total_after >= allowed
        if after <= before:
            assert max(grown) <= 0


# -- end to end: the leader's controllers over the object layer ------------------------------


def node_body(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {},
            "status": {"allocatable": {"cpu": "16", "memory": "32Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


async def kubelet(registry: Registry, ready_image: str) -> None:
    """The agents' part: bound pods of ``ready_image`` run and turn Ready; the others stay
    Pending (an image that cannot be pulled), so a rollout to them never finishes."""
    while True:
        for pod in (await registry.list("pods", "default"))["items"]:
            image = pod["spec"]["containers"][0]["image"]
            if pod["metadata"].get("deletionTimestamp"):
                try:
                    await registry.delete("pods", "default", pod["metadata"]["name"], grace_period_seconds=0)
                except Exception:
                    pass
            elif pod["spec"].get("nodeName") and image == ready_image and pod["status"].get("phase") == "Pending":
                pod["status"] = {**pod["status"], "phase": "Running", "hostIP": "127.0.64.1",
                                 "conditions": [{"type": "Ready", "status": "True",
                                                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
                try:
                    await registry.update_status("pods", "default", pod["metadata"]["name"], pod)
                except Exception:
                    pass
        await trio.sleep(0.05)


async def sizes_by_image(registry: Registry) -> dict[str, tuple[int, dict]]:
    out = {}
    for r in (await registry.list("replicasets", "default"))["items"]:
        image = r["spec"]["template"]["spec"]["containers"][0]["image"]
        out[image] = (r["spec"]["replicas"], r["metadata"].get("annotations") or {})
    return out


async def wait_for(registry: Registry, predicate, what: str, timeout: float = 15.0) -> None:
    with trio.move_on_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"not within {timeout} s: {what}; replicasets: {await sizes_by_image(registry)}")


async def test_scaling_a_stuck_rollout_spreads_replicas_over_old_and_new():
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    await registry.create("nodes", None, node_body("n1"))
    body = deployment(10, 3, 2, image="nginx:1")
    del body["metadata"]["uid"], body["metadata"]["generation"], body["status"]
    await registry.create("deployments", "default", body)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(kubelet, registry, "nginx:1")
        # (no node Lease here: a grace far past the test keeps n1 from being declared lost)
        config = LeaderConfig(name="m1", node_lifecycle=NodeLifecycleConfig(grace_period=600.0))
        nursery.start_soon(run_duties, registry, config)

        async def v1_available() -> bool:
            d = await registry.get("deployments", "default", "web")
            return (d.get("status") or {}).get("availableReplicas") == 10

        await wait_for(registry, v1_available, "10 nginx:1 replicas available")
        # Roll out an image whose pods never become ready: the rollout sticks at 8 old
        # (10 - maxUnavailable 2) and 5 new (13 = 10 + maxSurge 3 in all).
        d = await registry.get("deployments", "default", "web")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:broken"
        await registry.update("deployments", "default", "web", d)

        async def stuck() -> bool:
            s = await sizes_by_image(registry)
            return s.get("nginx:1", (0,))[0] == 8 and s.get("nginx:broken", (0,))[0] == 5

        await wait_for(registry, stuck, "rollout stuck at 8 old / 5 new")
        # kubectl scale --replicas=15: 3 more old, 2 more new (not 5 more new).
        scale = await registry.get_scale("deployments", "default", "web")
        scale["spec"]["replicas"] = 15
        await registry.update_scale("deployments", "default", "web", scale)

        async def spread() -> bool:
            s = await sizes_by_image(registry)
            return s["nginx:1"][0] == 11 and s["nginx:broken"][0] == 7

        await wait_for(registry, spread, "15 spread as 11 old / 7 new")
        for _size, annotations in (await sizes_by_image(registry)).values():
            assert annotations[DESIRED_REPLICAS_ANNOTATION] == "15" and annotations[MAX_REPLICAS_ANNOTATION] == "18"

        # Pods follow, and the stuck rollout stays where it is (nothing more becomes available).
        async def pods_follow() -> bool:
            pods = [p for p in (await registry.list("pods", "default"))["items"] if not p["metadata"].get("deletionTimestamp")]
            images = [p["spec"]["containers"][0]["image"] for p in pods]
            return images.count("nginx:1") == 11 and images.count("nginx:broken") == 7

        await wait_for(registry, pods_follow, "11 nginx:1 pods and 7 nginx:broken pods")
        s = await sizes_by_image(registry)
        assert (s["nginx:1"][0], s["nginx:broken"][0]) == (11, 7)

        # Scale down to 5 mid-rollout: 18 -> 8 (5 + maxSurge 3) as round(11*8/18)=5 old and
        # round(7*8/18)=3 new. The rollout then goes on from there (5 old available, 3 needed:
        # 2 old go, 2 new come), so the scale itself is what the Events tell.
        names = {image: r["metadata"]["name"] for r in (await registry.list("replicasets", "default"))["items"]
                 for image in [r["spec"]["template"]["spec"]["containers"][0]["image"]]}
        scale = await registry.get_scale("deployments", "default", "web")
        scale["spec"]["replicas"] = 5
        await registry.update_scale("deployments", "default", "web", scale)

        async def scaled_down() -> bool:
            messages = {e["message"] for e in (await registry.list("events", "default"))["items"]
                        if e["reason"] == "ScalingReplicaSet"}
            return {f"Scaled down replica set {names['nginx:1']} from 11 to 5",
                    f"Scaled down replica set {names['nginx:broken']} from 7 to 3"} <= messages

        await wait_for(registry, scaled_down, "Events: scaled down 11 -> 5 old and 7 -> 3 new")

        async def rolled_on() -> bool:
            s = await sizes_by_image(registry)
            return s["nginx:1"][0] == 3 and s["nginx:broken"][0] == 5

        await wait_for(registry, rolled_on, "the rollout on at 3 old / 5 new (8 = 5 + maxSurge, 3 available)")
        nursery.cancel_scope.cancel()
