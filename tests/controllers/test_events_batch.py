"""Events queued together are written in one store round; Registry.create_many's per-item results."""

from __future__ import annotations

import trio

from controlplane.controllers.events import EventRecorder
from controlplane.errors import ApiError
from controlplane.registry import Registry
from raftstore import MemoryStore


class _CountingStore(MemoryStore):
    rounds = 0

    async def txn_many(self, *args, **kw):  # type: ignore[no-untyped-def, override]
        self.rounds += 1
        return await super().txn_many(*args, **kw)

    async def txn(self, *args, **kw):  # type: ignore[no-untyped-def, override]
        self.rounds += 1
        return await super().txn(*args, **kw)


def _pod(name: str) -> dict:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}}


async def test_queued_events_are_created_in_few_store_rounds():
    store = _CountingStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    recorder = EventRecorder(registry, "test")
    for i in range(200):
        recorder.event(_pod(f"p{i}"), "Normal", "Scheduled", f"Successfully assigned default/p{i} to n1")
    recorder.event(_pod("p0"), "Normal", "Scheduled", "Successfully assigned default/p0 to n1")  # a repeat
    before = store.rounds
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        with trio.fail_after(10):
            while len((await registry.list("events", "default"))["items"]) < 200:
                await trio.sleep(0.01)
        await trio.sleep(0.1)  # nothing more may come
        nursery.cancel_scope.cancel()
    events = (await registry.list("events", "default"))["items"]
    assert len(events) == 200
    assert store.rounds - before <= 8  # 201 events: a handful of rounds, not 201
    p0 = [e for e in events if e["involvedObject"]["name"] == "p0"]
    assert len(p0) == 1 and p0[0]["count"] == 2
    # the series is remembered: the next repeat bumps the same Event
    assert recorder._series[("Pod", "default", "p0", "uid-p0", "Scheduled",
                             "Successfully assigned default/p0 to n1")] == (p0[0]["metadata"]["name"], 2)


async def test_create_many_reports_each_item():
    registry = Registry(MemoryStore())
    await registry.ensure_namespaces()
    await registry.create("configmaps", "default", {"apiVersion": "v1", "kind": "ConfigMap",
                                                    "metadata": {"name": "taken"}})
    results = await registry.create_many("configmaps", [
        ("default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}),
        ("default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "taken"}}),
        ("nowhere", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}),
        ("default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
    ])
    assert not isinstance(results[0], ApiError) and results[0]["metadata"]["resourceVersion"]
    assert (await registry.get("configmaps", "default", "a"))["data"] == {"k": "v"}
    assert [r.code if isinstance(r, ApiError) else 0 for r in results] == [0, 409, 404, 422]
