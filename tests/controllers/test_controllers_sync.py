"""Controllers against the real object layer, sample-controller style: preload the store, run the
informers, call ``sync(key)`` and assert on what was written."""

from __future__ import annotations

import json

import pytest
import trio

from controlplane.controllers import (
    DeploymentController,
    EndpointsController,
    EventRecorder,
    GarbageCollector,
    Informer,
    NamespaceController,
    NodeLifecycleConfig,
    NodeLifecycleController,
    ReplicaSetController,
)
from controlplane.controllers._endpoints_plan import HOST_PORTS_ANNOTATION
from controlplane.errors import ApiError
from controlplane.registry import Registry
from raftstore import MemoryStore

LABELS = {"app": "web"}


def deployment_body(replicas: int = 3, image: str = "nginx:1") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    }


def rs_body(replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
        },
    }


def node_body(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


@pytest.fixture
async def registry():
    reg = Registry(MemoryStore())
    await reg.ensure_namespaces()
    return reg


async def start(nursery, registry, *plurals: str, namespace: dict | None = None) -> dict[str, Informer]:
    infs = {}
    for p in plurals:
        inf = Informer(registry, p, namespace=(namespace or {}).get(p))
        await nursery.start(inf.run)
        infs[p] = inf
    return infs


async def start_replicaset_controller(nursery, registry) -> tuple[dict[str, Informer], ReplicaSetController]:
    """The ReplicaSet controller over running replicasets/pods informers (not yet running itself)."""
    infs = await start(nursery, registry, "replicasets", "pods")
    return infs, ReplicaSetController(registry, infs["replicasets"], infs["pods"])


async def mirrors(registry, infs: dict[str, Informer], namespace: str = "default") -> None:
    """Wait (bounded) until every informer's cache holds exactly what the registry lists now.

    Controllers read their informers, so a sync right after another controller's writes must
    wait for those writes to arrive, not for a fixed time.
    """
    for plural, inf in infs.items():
        want = {f"{namespace}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in (await registry.list(plural, namespace))["items"]}

        def same(inf=inf, want=want) -> bool:
            have = {k: o["metadata"]["resourceVersion"] for k, o in inf.cache.items() if k.startswith(f"{namespace}/")}
            return have == want

        assert await inf.wait_for(same, timeout=5.0), f"{plural} informer never caught up"


async def names(registry, plural: str, ns: str | None = "default") -> list[str]:
    return sorted(o["metadata"]["name"] for o in (await registry.list(plural, ns))["items"])


async def make_ready(registry, pod: dict, node: str = "n1", host_ip: str = "127.0.1.1") -> dict:
    """What an agent does once the containers run: bind (here by hand), Running, Ready."""
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    if not pod["spec"].get("nodeName"):
        [pod] = await registry.bind_many([(ns, name, node)])
    pod = {**pod, "status": {**pod["status"], "phase": "Running", "hostIP": host_ip,
                              "conditions": [{"type": "Ready", "status": "True",
                                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    return await registry.update_status("pods", ns, name, pod)


async def test_replicaset_sync_creates_pods_and_writes_status(registry):
    await registry.create("replicasets", "default", rs_body(3))
    async with trio.open_nursery() as nursery:
        infs, ctl = await start_replicaset_controller(nursery, registry)
        await ctl.sync("default/web-1")
        pods = (await registry.list("pods", "default"))["items"]
        assert len(pods) == 3
        rs = await registry.get("replicasets", "default", "web-1")
        for p in pods:
            assert p["metadata"]["name"].startswith("web-1-")
            assert p["metadata"]["labels"] == LABELS
            [ref] = p["metadata"]["ownerReferences"]
            assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"] is True
        # A second sync right away creates nothing more (the informer already reflects the pods).
        await ctl.sync("default/web-1")
        assert len(await names(registry, "pods")) == 3
        rs = await registry.get("replicasets", "default", "web-1")
        assert rs["status"]["replicas"] == 3 and rs["status"]["observedGeneration"] == 1
        # Two pods become ready; one is deleted by a user: it is replaced.
        await make_ready(registry, pods[0])
        await make_ready(registry, pods[1])
        await registry.delete("pods", "default", pods[2]["metadata"]["name"])
        await infs["pods"].wait_for(lambda: len(infs["pods"].cache) == 2 and all(
            p["status"].get("phase") == "Running" for p in infs["pods"].cache.values()))
        await ctl.sync("default/web-1")
        await ctl.sync("default/web-1")
        assert len(await names(registry, "pods")) == 3
        rs = await registry.get("replicasets", "default", "web-1")
        assert rs["status"]["readyReplicas"] == 2 and rs["status"]["availableReplicas"] == 2
        # Scale down to 1: the not-ready (unscheduled) pod goes first, then one ready pod.
        rs["spec"]["replicas"] = 1
        await registry.update("replicasets", "default", "web-1", rs)
        await infs["replicasets"].wait_for(lambda: infs["replicasets"].get("default/web-1")["spec"]["replicas"] == 1)
        await ctl.sync("default/web-1")
        left = (await registry.list("pods", "default"))["items"]
        alive = [p for p in left if not p["metadata"].get("deletionTimestamp")]
        assert len(alive) == 1 and alive[0]["status"]["phase"] == "Running"
        nursery.cancel_scope.cancel()


async def test_stale_write_from_deposed_leader_fails_with_conflict(registry):
    """A write based on an old resourceVersion is refused (issue 4: deposed leader's writes 409)."""
    await registry.create("replicasets", "default", rs_body(1))
    async with trio.open_nursery() as nursery:
        infs, ctl = await start_replicaset_controller(nursery, registry)
        stale = infs["replicasets"].get("default/web-1")
        fresh = await registry.get("replicasets", "default", "web-1")
        fresh["spec"]["replicas"] = 5
        await registry.update("replicasets", "default", "web-1", fresh)  # the "new leader" wrote
        from controlplane.controllers._replicaset_plan import plan_replicaset

        plan = plan_replicaset(stale, [])
        plan.create = 0
        plan.status = {**plan.status, "replicas": 42}
        with pytest.raises(ApiError) as err:
            await ctl.commit(stale, plan)
        assert err.value.code == 409
        nursery.cancel_scope.cancel()


async def test_deployment_sync_creates_replicaset_and_rolls_out(registry):
    await registry.create("deployments", "default", deployment_body(2))
    async with trio.open_nursery() as nursery:
        infs = await start(nursery, registry, "deployments", "replicasets", "pods")
        recorder = EventRecorder(registry, "test")
        await nursery.start(recorder.run)
        dctl = DeploymentController(registry, infs["deployments"], infs["replicasets"], recorder)
        rctl = ReplicaSetController(registry, infs["replicasets"], infs["pods"])
        await dctl.sync("default/web")
        [rs_name] = await names(registry, "replicasets")
        rs = await registry.get("replicasets", "default", rs_name)
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        d = await registry.get("deployments", "default", "web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        assert d["status"]["observedGeneration"] == d["metadata"]["generation"]

        async def settle() -> None:
            # The agent side: every pod ready; then both controllers converge.
            for _ in range(6):
                await rctl.sync(f"default/{(await names(registry, 'replicasets'))[-1]}")
                for name in await names(registry, "replicasets"):
                    await rctl.sync(f"default/{name}")
                for p in (await registry.list("pods", "default"))["items"]:
                    if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") != "Running":
                        await make_ready(registry, p)
                await mirrors(registry, infs)
                for name in await names(registry, "replicasets"):
                    await rctl.sync(f"default/{name}")
                await mirrors(registry, infs)
                await dctl.sync("default/web")
                await mirrors(registry, infs)

        await settle()
        d = await registry.get("deployments", "default", "web")
        assert d["status"]["availableReplicas"] == 2 and d["status"]["updatedReplicas"] == 2
        prog = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
        assert prog["reason"] == "NewReplicaSetAvailable"

        # New image: a second ReplicaSet takes over, the first is scaled to zero.
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
        await registry.update("deployments", "default", "web", d)
        await infs["deployments"].wait_for(
            lambda: infs["deployments"].get("default/web")["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2")
        await settle()
        rss = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r
               for r in (await registry.list("replicasets", "default"))["items"]}
        assert rss["2"]["spec"]["replicas"] == 2 and rss["1"]["spec"]["replicas"] == 0
        d = await registry.get("deployments", "default", "web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        assert d["status"]["updatedReplicas"] == 2 and d["status"]["availableReplicas"] == 2
        # `kubectl rollout undo`: kubectl itself copies the previous ReplicaSet's template (minus
        # the pod-template-hash label) into the Deployment; the controller makes it revision 3.
        template = json.loads(json.dumps(rss["1"]["spec"]["template"]))
        del template["metadata"]["labels"]["pod-template-hash"]
        d = await registry.get("deployments", "default", "web")
        d["spec"]["template"] = template
        await registry.update("deployments", "default", "web", d)
        await infs["deployments"].wait_for(
            lambda: infs["deployments"].get("default/web")["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1")
        await settle()
        by_name = {r["metadata"]["name"]: r for r in (await registry.list("replicasets", "default"))["items"]}
        v1 = by_name[rss["1"]["metadata"]["name"]]
        assert v1["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert v1["spec"]["replicas"] == 2 and by_name[rss["2"]["metadata"]["name"]]["spec"]["replicas"] == 0
        d = await registry.get("deployments", "default", "web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert d["status"]["availableReplicas"] == 2
        # The story kubectl describe tells (the recorder writes events in the background).
        with trio.fail_after(5):
            while "ScalingReplicaSet" not in {e["reason"] for e in (await registry.list("events", "default"))["items"]}:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


async def test_endpoints_follow_ready_pods_host_ports(registry):
    await registry.create("services", "default", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": LABELS, "ports": [{"port": 80, "targetPort": 8080}]}})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-a", "namespace": "default", "labels": LABELS,
                        "annotations": {HOST_PORTS_ANNOTATION: json.dumps({"8080/TCP": 31080})}},
           "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080}]}]}}
    created = await registry.create("pods", "default", pod)
    async with trio.open_nursery() as nursery:
        infs = await start(nursery, registry, "services", "pods", "endpoints")
        ctl = EndpointsController(registry, infs["services"], infs["pods"], infs["endpoints"])
        await ctl.sync("default/web")
        ep = await registry.get("endpoints", "default", "web")
        assert ep.get("subsets") in (None, [])  # not running anywhere yet
        await make_ready(registry, created, host_ip="127.0.1.7")
        await infs["pods"].wait_for(lambda: infs["pods"].get("default/web-a")["status"].get("hostIP"))
        await infs["endpoints"].wait_for(lambda: infs["endpoints"].get("default/web") is not None)
        await ctl.sync("default/web")
        ep = await registry.get("endpoints", "default", "web")
        [subset] = ep["subsets"]
        assert [a["ip"] for a in subset["addresses"]] == ["127.0.1.7"]
        assert subset["ports"] == [{"port": 31080, "protocol": "TCP"}]
        await registry.delete("services", "default", "web")
        await infs["services"].wait_for(lambda: infs["services"].get("default/web") is None)
        await ctl.sync("default/web")
        assert await names(registry, "endpoints") == []
        nursery.cancel_scope.cancel()


async def test_gc_background_and_orphan(registry):
    rs = await registry.create("replicasets", "default", rs_body(0))
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": rs["metadata"]["uid"], "controller": True}
    for n in ("a", "b"):
        await registry.create("pods", "default", {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": n, "namespace": "default", "ownerReferences": [ref]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}})
    async with trio.open_nursery() as nursery:
        infs = await start(nursery, registry, "replicasets", "pods")
        gc = GarbageCollector(registry, infs)
        await nursery.start(gc.run)
        # Orphan: the owner goes, dependents stay without the reference.
        await registry.delete("replicasets", "default", "web-1", propagation_policy="Orphan")
        with trio.fail_after(5):
            while await names(registry, "replicasets"):
                await trio.sleep(0.02)
        for p in (await registry.list("pods", "default"))["items"]:
            assert not p["metadata"].get("ownerReferences")
        # Background: a new owner adopts "a"; deleting it removes "a" but not "b".
        rs2 = await registry.create("replicasets", "default", {**rs_body(0), "metadata": {"name": "web-2", "namespace": "default"}})
        a = await registry.get("pods", "default", "a")
        a["metadata"]["ownerReferences"] = [{**ref, "name": "web-2", "uid": rs2["metadata"]["uid"]}]
        await registry.update("pods", "default", "a", a)
        await registry.delete("replicasets", "default", "web-2")
        with trio.fail_after(5):
            while await names(registry, "pods") != ["b"]:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


async def test_gc_foreground_deletes_dependents_before_owner(registry):
    rs = await registry.create("replicasets", "default", rs_body(0))
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": rs["metadata"]["uid"],
           "controller": True, "blockOwnerDeletion": True}
    await registry.create("pods", "default", {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "a", "namespace": "default", "ownerReferences": [ref]},
        "spec": {"containers": [{"name": "c", "image": "i"}]}})
    async with trio.open_nursery() as nursery:
        infs = await start(nursery, registry, "replicasets", "pods")
        gc = GarbageCollector(registry, infs)
        await nursery.start(gc.run)
        owner = await registry.delete("replicasets", "default", "web-1", propagation_policy="Foreground")
        assert "foregroundDeletion" in owner["metadata"]["finalizers"]
        with trio.fail_after(5):
            while await names(registry, "replicasets") or await names(registry, "pods"):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


async def test_namespace_deletion_removes_contents(registry):
    await registry.create("namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    await registry.create("configmaps", "team", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "team"}})
    async with trio.open_nursery() as nursery:
        infs = await start(nursery, registry, "namespaces")
        ctl = NamespaceController(registry, infs["namespaces"])
        await nursery.start(ctl.run)
        await registry.delete("namespaces", None, "team")
        with trio.fail_after(5):
            while "team" in await names(registry, "namespaces", None):
                await trio.sleep(0.02)
        assert await names(registry, "configmaps", "team") == []
        nursery.cancel_scope.cancel()


async def test_node_lifecycle_taints_silent_node_and_evicts_its_pods(registry, autojump_clock):
    for n in ("n1", "n2", "n3"):
        await registry.create("nodes", None, node_body(n))
    pod = await registry.create("pods", "default", {"apiVersion": "v1", "kind": "Pod",
                                                     "metadata": {"name": "p", "namespace": "default"},
                                                     "spec": {"containers": [{"name": "c", "image": "i"}]}})
    pod = await make_ready(registry, pod, node="n1")
    lease_ns = {"leases": "kube-node-lease"}
    config = NodeLifecycleConfig(grace_period=8.0, default_toleration_seconds=4.0)

    async def renew(node: str, i: int) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "renewTime": f"2026-01-01T00:00:{i:02d}.000000Z"}}
        try:
            cur = await registry.get("leases", "kube-node-lease", node)
            await registry.update("leases", "kube-node-lease", node, {**cur, "spec": body["spec"]})
        except Exception:
            await registry.create("leases", "kube-node-lease", body)

    async with trio.open_nursery() as nursery:
        infs = await start(nursery, registry, "nodes", "leases", "pods", namespace=lease_ns)
        ctl = NodeLifecycleController(registry, infs["nodes"], infs["leases"], infs["pods"], config=config)
        start_t = trio.current_time()
        # n2 and n3 keep renewing; n1 is silent from the start.
        for i in range(30):
            await renew("n2", i)
            await renew("n3", i)
            await ctl.monitor_once()
            await trio.sleep(0.5)
            node = await registry.get("nodes", None, "n1")
            if node["spec"].get("taints"):
                break
        tainted_at = trio.current_time() - start_t
        assert 8.0 <= tainted_at <= 9.5
        assert node["spec"]["taints"][0]["key"] == "node.kubernetes.io/unreachable"
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "Unknown"
        assert (await registry.get("nodes", None, "n2"))["spec"].get("taints") in (None, [])
        p = await registry.get("pods", "default", "p")
        assert next(c for c in p["status"]["conditions"] if c["type"] == "Ready")["status"] == "False"
        assert not p["metadata"].get("deletionTimestamp")
        for i in range(30, 60):
            await renew("n2", i)
            await renew("n3", i)
            await ctl.monitor_once()
            await trio.sleep(0.5)
            p = await registry.get("pods", "default", "p")
            if p["metadata"].get("deletionTimestamp"):
                break
        evicted_at = trio.current_time() - start_t
        assert tainted_at + 4.0 <= evicted_at <= tainted_at + 5.0
        nursery.cancel_scope.cancel()


async def test_no_eviction_when_most_nodes_are_silent(registry, autojump_clock):
    for n in ("n1", "n2", "n3"):
        await registry.create("nodes", None, node_body(n))
    pod = await registry.create("pods", "default", {"apiVersion": "v1", "kind": "Pod",
                                                     "metadata": {"name": "p", "namespace": "default"},
                                                     "spec": {"containers": [{"name": "c", "image": "i"}]}})
    await make_ready(registry, pod, node="n1")
    async with trio.open_nursery() as nursery:
        infs = await start(nursery, registry, "nodes", "leases", "pods", namespace={"leases": "kube-node-lease"})
        ctl = NodeLifecycleController(registry, infs["nodes"], infs["leases"], infs["pods"])
        for _ in range(60):  # 30 s of total silence: the masters are the ones cut off
            await ctl.monitor_once()
            await trio.sleep(0.5)
        p = await registry.get("pods", "default", "p")
        assert not p["metadata"].get("deletionTimestamp")
        nursery.cancel_scope.cancel()


async def test_replicaset_creates_pods_in_slow_start_batches():
    rounds: list[int] = []

    class Counting(Registry):
        async def create_many(self, resource, items):  # type: ignore[no-untyped-def, override]
            rounds.append(len(items))
            return await super().create_many(resource, items)

    registry = Counting(MemoryStore())
    await registry.ensure_namespaces()
    await registry.create("replicasets", "default", rs_body(100))
    async with trio.open_nursery() as nursery:
        infs, ctl = await start_replicaset_controller(nursery, registry)
        await ctl.sync("default/web-1")
        assert len(await names(registry, "pods")) == 100
        assert rounds == [1, 2, 4, 8, 16, 32, 37]  # 7 store rounds, not 100
        nursery.cancel_scope.cancel()


async def test_replicaset_stops_creating_after_a_failed_batch(registry):
    await registry.create("replicasets", "default", rs_body(50))
    ns = await registry.get("namespaces", None, "default")
    async with trio.open_nursery() as nursery:
        infs, ctl = await start_replicaset_controller(nursery, registry)
        await registry.update_status("namespaces", None, "default", {**ns, "status": {"phase": "Terminating"}})
        with pytest.raises(ApiError) as err:
            await ctl.sync("default/web-1")
        assert err.value.code == 403
        assert await names(registry, "pods") == []
        nursery.cancel_scope.cancel()


async def test_replicaset_status_follows_a_burst_of_ready_pods_in_few_writes(registry):
    # Pods turning ready one after another move only the ReplicaSet's status: the controller
    # joins them (STATUS_BATCH_PERIOD) instead of writing the status once per pod.
    await registry.create("replicasets", "default", rs_body(20))
    async with trio.open_nursery() as nursery:
        infs, ctl = await start_replicaset_controller(nursery, registry)
        await nursery.start(ctl.run)
        assert await infs["pods"].wait_for(lambda: len(infs["pods"].cache) >= 20, timeout=10)
        writes: list[dict] = []
        infs["replicasets"].add_handler(
            lambda old, new: writes.append(new["status"]) if old and new and old.get("status") != new.get("status") else None)
        for pod in list(infs["pods"].cache.values()):
            await make_ready(registry, pod)
        assert await infs["replicasets"].wait_for(
            lambda: infs["replicasets"].get("default/web-1")["status"].get("readyReplicas") == 20, timeout=10)
        rs = await registry.get("replicasets", "default", "web-1")
        assert rs["status"]["readyReplicas"] == 20 and rs["status"]["availableReplicas"] == 20
        assert len(await names(registry, "pods")) == 20
        assert len(writes) <= 6, writes  # one per pod would be 20
        nursery.cancel_scope.cancel()
