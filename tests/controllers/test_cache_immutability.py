"""The leader's caches share decoded objects (and, through controlplane._sharing, parts of them
across objects): no controller or the scheduler may change a cached object in place."""

from __future__ import annotations

import copy

import trio
from test_leader_duties import available, duties_config, fake_agents, seed, wait_until

from controlplane.codec import encode_object
from controlplane.controllers._informer import Informer
from controlplane.leader import LEASE_NAMESPACE, run_duties
from controlplane.registry import Registry
from raftstore import MemoryStore

PLURALS = ("nodes", "pods", "replicasets", "deployments", "services", "endpoints", "namespaces", "configmaps")


class _Witness:
    """Remembers each cached object's encoding when the informer stores it and checks it is
    unchanged when the object is replaced, deleted, or at the end."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[dict, bytes]] = {}
        self.changed: list[str] = []

    def _check(self, obj: dict) -> None:
        kept = self.seen.pop(id(obj), None)
        if kept is not None and kept[0] is obj and encode_object(obj) != kept[1]:
            meta = obj.get("metadata") or {}
            self.changed.append(f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')} "
                                f"rv {meta.get('resourceVersion')}")

    def handler(self, old: dict | None, new: dict | None) -> None:
        if old is not None:
            self._check(old)
        if new is not None:
            self.seen[id(new)] = (new, encode_object(new))

    def check_all(self) -> None:
        for obj, _ in list(self.seen.values()):
            self._check(obj)


async def test_controllers_never_change_cached_objects():
    store = MemoryStore()
    registry = Registry(store)
    await seed(registry, 4)
    await registry.create("services", "default", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    informers = {plural: Informer(registry, plural) for plural in PLURALS}
    informers["leases"] = Informer(registry, "leases", namespace=LEASE_NAMESPACE)
    witness = _Witness()
    config = duties_config()
    async with trio.open_nursery() as nursery:
        for inf in informers.values():
            nursery.start_soon(inf.run)
        for inf in informers.values():
            await inf.synced.wait()
            inf.add_handler(witness.handler)
        nursery.start_soon(fake_agents, registry)
        nursery.start_soon(run_duties, registry, config, informers)
        await wait_until(lambda: available(registry, 4))
        # a rolling update (new ReplicaSet, pods replaced), then a scale-down and a delete
        # (garbage collection of the ReplicaSets and their pods)
        d = copy.deepcopy(await registry.get("deployments", "default", "web"))
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
        d["spec"]["replicas"] = 6
        await registry.update("deployments", "default", "web", d)
        await wait_until(lambda: available(registry, 6), timeout=20.0)
        d = await registry.get("deployments", "default", "web")
        d["spec"]["replicas"] = 2
        await registry.update("deployments", "default", "web", d)
        await wait_until(lambda: available(registry, 2), timeout=20.0)
        await registry.delete("deployments", "default", "web")

        async def no_pods() -> bool:
            return not (await registry.list("pods", "default"))["items"]

        await wait_until(no_pods, timeout=20.0)
        witness.check_all()
        nursery.cancel_scope.cancel()
    assert witness.changed == []


def test_the_witness_catches_a_change_in_place():
    w = _Witness()
    obj = {"kind": "Pod", "metadata": {"name": "p", "namespace": "default", "labels": {"a": "1"}}}
    w.handler(None, obj)
    obj["metadata"]["labels"]["a"] = "2"
    w.check_all()
    assert w.changed == ["Pod default/p rv None"]
