"""Garbage collection of objects with several owners (Kubernetes' garbage collector,
attemptToDeleteItem): a dependent goes only once every owner is gone; while one is left, the
references to the owners that are gone (or that wait for it in foreground deletion) are removed."""

from __future__ import annotations

import trio
from test_controller_plans import obj, ref

from controlplane.controllers import GarbageCollector, Informer
from controlplane.controllers._gc_plan import FOREGROUND, ORPHAN, plan_gc
from controlplane.registry import Registry
from raftstore import MemoryStore

# -- the plan (pure) --------------------------------------------------------------------------


def test_plan_keeps_a_dependent_another_owner_holds_and_drops_the_gone_owners():
    child = obj("child", "c1", [{"uid": "gone-1"}, {"uid": "alive"}, {"uid": "gone-2"}])
    alive = obj("alive", "alive")
    plan = plan_gc({ref(child): child, ref(alive, "configmaps"): alive})
    assert plan.delete_background == [] and plan.delete_foreground == []
    assert plan.drop_refs == {ref(child): {"gone-1", "gone-2"}}
    # Every owner there: nothing to do.
    whole = obj("child", "c1", [{"uid": "alive"}])
    assert plan_gc({ref(whole): whole, ref(alive, "configmaps"): alive}).drop_refs == {}
    # Every owner gone: deleted, nothing patched.
    orphan = obj("child", "c1", [{"uid": "gone-1"}, {"uid": "gone-2"}])
    plan = plan_gc({ref(orphan): orphan})
    assert plan.delete_background == [ref(orphan)] and plan.drop_refs == {}


def test_plan_foreground_owner_lets_go_of_a_dependent_another_owner_holds():
    # An owner in foreground deletion does not take a dependent that another owner keeps: the
    # dependent loses the reference (else the owner would wait for it forever) and stays.
    waiting = obj("a", "o1", deleting=True, finalizers=[FOREGROUND])
    alive = obj("b", "o2")
    held = obj("held", "c1", [{"uid": "o1", "blockOwnerDeletion": True}, {"uid": "o2"}])
    only = obj("only", "c2", [{"uid": "o1", "blockOwnerDeletion": True}])
    objs = {ref(waiting, "configmaps"): waiting, ref(alive, "configmaps"): alive, ref(held): held, ref(only): only}
    plan = plan_gc(objs)
    assert plan.delete_foreground == [ref(only)]
    assert plan.drop_refs == {ref(held): {"o1"}}
    assert plan.finalize == {}  # both still block it
    # Waiting owner plus a gone one and no other: deleted in the foreground, as before.
    both = obj("both", "c3", [{"uid": "o1", "blockOwnerDeletion": True}, {"uid": "gone"}])
    plan = plan_gc({ref(waiting, "configmaps"): waiting, ref(both): both})
    assert plan.delete_foreground == [ref(both)] and plan.drop_refs == {} and plan.delete_background == []


def test_plan_orphaning_owner_keeps_its_own_bucket():
    owner = obj("a", "o1", deleting=True, finalizers=[ORPHAN])
    child = obj("child", "c1", [{"uid": "o1"}, {"uid": "gone"}])
    plan = plan_gc({ref(owner, "configmaps"): owner, ref(child): child})
    assert plan.orphan == {ref(child): {"o1"}}
    assert plan.drop_refs == {ref(child): {"gone"}}  # the orphaning owner is still there


# -- the collector against the object layer --------------------------------------------------


def configmap(name: str, owners: list[dict] = ()) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "ownerReferences": list(owners)}, "data": {"k": name}}


def pod(name: str, owners: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "ownerReferences": owners},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


def replicaset(name: str) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def owner_ref(o: dict, **extra: bool) -> dict:
    return {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"], **extra}


async def start_gc(nursery: trio.Nursery, registry: Registry) -> None:
    infs = {}
    for plural in ("replicasets", "pods", "configmaps"):
        infs[plural] = Informer(registry, plural)
        await nursery.start(infs[plural].run)
    await nursery.start(GarbageCollector(registry, infs).run)


async def owner_uids(registry: Registry, plural: str, name: str) -> list[str] | None:
    """The owner uids of an object as the store has it, or None once it is gone."""
    found = [o for o in (await registry.list(plural, "default"))["items"] if o["metadata"]["name"] == name]
    return [r["uid"] for r in found[0]["metadata"].get("ownerReferences") or []] if found else None


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    with trio.move_on_after(timeout):
        while not await predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"not within {timeout} s: {what}")


async def test_dependent_of_two_owners_stays_until_both_are_gone():
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    a = await registry.create("replicasets", "default", replicaset("owner-a"))
    b = await registry.create("configmaps", "default", configmap("owner-b"))
    refs = [owner_ref(a, controller=True), owner_ref(b)]
    await registry.create("pods", "default", pod("shared-pod", refs))
    await registry.create("configmaps", "default", configmap("shared-cm", refs))
    async with trio.open_nursery() as nursery:
        await start_gc(nursery, registry)
        # A goes, and a new ReplicaSet takes its name at once: same name, another uid, so the
        # reference to A dangles all the same.
        await registry.delete("replicasets", "default", "owner-a")
        again = await registry.create("replicasets", "default", replicaset("owner-a"))
        assert again["metadata"]["uid"] != a["metadata"]["uid"]
        for plural, name in (("pods", "shared-pod"), ("configmaps", "shared-cm")):
            async def only_b(plural=plural, name=name) -> bool:
                return await owner_uids(registry, plural, name) == [b["metadata"]["uid"]]

            await until(only_b, f"{plural}/{name} keeps only B's reference")
        p = await registry.get("pods", "default", "shared-pod")
        assert p["metadata"]["ownerReferences"] == [owner_ref(b)] and not p["metadata"].get("deletionTimestamp")
        assert (await registry.get("configmaps", "default", "shared-cm"))["data"] == {"k": "shared-cm"}
        # The new owner-a is nobody's owner and stays.
        assert await owner_uids(registry, "replicasets", "owner-a") == []

        # B goes too: now every owner is gone, and so are the dependents.
        await registry.delete("configmaps", "default", "owner-b")

        async def both_gone() -> bool:
            return (await owner_uids(registry, "pods", "shared-pod") is None
                    and await owner_uids(registry, "configmaps", "shared-cm") is None)

        await until(both_gone, "dependents deleted once both owners are gone")
        nursery.cancel_scope.cancel()


async def test_foreground_owner_goes_and_leaves_a_dependent_another_owner_holds():
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    a = await registry.create("configmaps", "default", configmap("owner-a"))
    b = await registry.create("configmaps", "default", configmap("owner-b"))
    await registry.create("configmaps", "default", configmap("held", [owner_ref(a, blockOwnerDeletion=True), owner_ref(b)]))
    await registry.create("configmaps", "default", configmap("only-a", [owner_ref(a, blockOwnerDeletion=True)]))
    async with trio.open_nursery() as nursery:
        await start_gc(nursery, registry)
        deleting = await registry.delete("configmaps", "default", "owner-a", propagation_policy="Foreground")
        assert FOREGROUND in deleting["metadata"]["finalizers"]

        async def settled() -> bool:
            return (await owner_uids(registry, "configmaps", "owner-a") is None
                    and await owner_uids(registry, "configmaps", "only-a") is None)

        await until(settled, "owner-a and its only dependent deleted")
        assert await owner_uids(registry, "configmaps", "held") == [b["metadata"]["uid"]]
        nursery.cancel_scope.cancel()
