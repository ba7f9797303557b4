"""A watch of one node's pods (spec.nodeName=NODE, what every agent opens) gets exactly that
node's events, including the binding (ADDED) and the deletion, and nothing of other nodes'
pods (which the registry skips without decoding them)."""

from __future__ import annotations

from typing import Any

import trio

from controlplane.registry import Registry
from raftstore import MemoryStore


def _pod(name: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


async def test_node_pod_watch_sees_only_its_node() -> None:
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    seen: list[tuple[str, str]] = []
    start = str(store.revision)

    async def watch() -> None:
        async for batch in registry.watch("pods", None, resource_version=start,
                                          field_selector="spec.nodeName=n1"):
            seen.extend((ev.type, ev.object["metadata"]["name"]) for ev in batch)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await registry.create("pods", "default", _pod("a", "n1"))
        await registry.create("pods", "default", _pod("b", "n2"))
        await registry.create("pods", "default", _pod("n1-named", "n2"))  # name mentions n1
        await registry.create("pods", "default", _pod("c"))
        await registry.bind("default", "c", {"apiVersion": "v1", "kind": "Binding",
                                              "metadata": {"name": "c"},
                                              "target": {"kind": "Node", "name": "n1"}})
        await registry.delete("pods", "default", "a", grace_period_seconds=0)
        await registry.delete("pods", "default", "b", grace_period_seconds=0)
        with trio.fail_after(5):
            while ("DELETED", "a") not in seen:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    names = {n for _, n in seen}
    assert "b" not in names and "n1-named" not in names
    assert seen[0] == ("ADDED", "a")
    assert ("ADDED", "c") in seen  # bound to n1: starts matching
    assert ("DELETED", "a") in seen
