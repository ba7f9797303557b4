"""The watch cache decodes a bound pod's update only for a watcher that gets it: the node index
takes the pod's node from the stored bytes (a set spec.nodeName never changes), and a write
that does move a pod to another node (one that bypassed the registry) is still indexed and
delivered exactly."""

from __future__ import annotations

from typing import Any

import trio

from controlplane.codec import decode_object, encode_object
from controlplane.registry import Registry
from raftstore import KeyValue, MemoryStore


def _pod(name: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


async def _until(cond: Any) -> None:
    with trio.fail_after(5):
        while not cond():
            await trio.sleep(0.01)


def _count_decodes(reg: Any) -> list[str]:
    """The names of the objects ``reg`` decodes from now on, in order."""
    decoded: list[str] = []
    shared = reg._decode_shared

    def counting(kv: KeyValue) -> dict[str, Any]:
        decoded.append(kv.key.rsplit("/", 1)[1])
        return shared(kv)

    reg._decode_shared = counting
    return decoded


async def test_bound_pod_updates_are_decoded_only_for_their_nodes_watchers(nursery: trio.Nursery) -> None:
    store = MemoryStore()
    reg = Registry(store)
    await nursery.start(reg.serve_watch_cache)
    await _until(lambda: reg.watch_cache is not None and reg.watch_cache.ready)
    await reg.ensure_namespaces()
    for name, node in (("a", "n1"), ("b", "n2"), ("u", None)):
        await reg.create("pods", "default", _pod(name, node))
    seen: list[tuple[str, str]] = []

    async def watch_n1() -> None:
        async for batch in reg.watch("pods", "default", field_selector="spec.nodeName=n1"):
            seen.extend((ev.type, ev.object["metadata"]["name"]) for ev in batch)

    nursery.start_soon(watch_n1)
    await _until(lambda: seen == [("ADDED", "a")])
    decoded = _count_decodes(reg)
    cache = reg.watch_cache
    assert cache is not None
    for name in ("a", "b"):
        pod = await reg.get("pods", "default", name)
        await reg.update_status("pods", "default", name, {**pod, "status": {"phase": "Running"}})
    await _until(lambda: ("MODIFIED", "a") in seen)
    await cache.wait_for(store.revision)
    assert "b" not in decoded  # n2 has no watcher here
    assert "a" in decoded
    # A binding sets the node (from none): decoded to index it; its later updates are not.
    await reg.bind("default", "u", {"target": {"kind": "Node", "name": "n2"}})
    pod = await reg.get("pods", "default", "u")
    await cache.wait_for(store.revision)
    decoded.clear()
    await reg.update_status("pods", "default", "u", {**pod, "status": {"phase": "Running"}})
    await cache.wait_for(store.revision)
    assert decoded == []
    # A write straight to the store moving b to n1 (the registry refuses that): the stored
    # bytes no longer hold b's old node, so it is decoded, re-indexed and delivered.
    key = "/registry/pods/default/b"
    kv = await store.get(key)
    assert kv is not None
    moved = decode_object(kv.value)
    moved["spec"]["nodeName"] = "n1"
    await store.put(key, encode_object(moved))
    await _until(lambda: ("ADDED", "b") in seen)
    listed = await reg.list("pods", "default", field_selector="spec.nodeName=n1")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["a", "b"]
    listed = await reg.list("pods", "default", field_selector="spec.nodeName=n2")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["u"]
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b")]


async def test_creates_and_bindings_are_decoded_only_for_watchers_of_their_node(nursery: trio.Nursery) -> None:
    # A follower's watch cache sees every pod created (unbound) and bound; its watchers are the
    # agents of some nodes. The node comes from the stored bytes; the pod is decoded only for
    # the watcher of the node it is bound to.
    store = MemoryStore()
    reg = Registry(store)
    await nursery.start(reg.serve_watch_cache)
    await _until(lambda: reg.watch_cache is not None and reg.watch_cache.ready)
    await reg.ensure_namespaces()
    seen: list[tuple[str, str]] = []

    async def watch_n1() -> None:
        async for batch in reg.watch("pods", "default", field_selector="spec.nodeName=n1"):
            seen.extend((ev.type, ev.object["metadata"]["name"]) for ev in batch)

    await reg.create("pods", "default", _pod("w", "n1"))
    nursery.start_soon(watch_n1)
    await _until(lambda: seen == [("ADDED", "w")])  # (the watch is registered)
    seen.clear()
    decoded = _count_decodes(reg)
    cache = reg.watch_cache
    assert cache is not None
    for name in ("x", "y"):
        await reg.create("pods", "default", _pod(name))
    await cache.wait_for(store.revision)
    assert decoded == []  # unbound: no watcher here can want them
    await reg.bind("default", "x", {"target": {"kind": "Node", "name": "n2"}})
    await cache.wait_for(store.revision)
    assert decoded == []  # bound to a node nobody here watches
    await reg.bind("default", "y", {"target": {"kind": "Node", "name": "n1"}})
    await _until(lambda: ("ADDED", "y") in seen)
    assert decoded == ["y"]
    assert seen == [("ADDED", "y")]
    # the index still knows both nodes' pods
    listed = await reg.list("pods", "default", field_selector="spec.nodeName=n2")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["x"]
    listed = await reg.list("pods", "default", field_selector="spec.nodeName=")
    assert [p["metadata"]["name"] for p in listed["items"]] == []
    listed = await reg.list("pods", "default", field_selector="spec.nodeName=n1")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["w", "y"]


def test_stored_node_reads_spec_node_name_from_the_bytes() -> None:
    from controlplane._watchcache import _node_of, _stored_node

    cases: list[Any] = [
        _pod("a"), _pod("a", "n1"),
        {"metadata": {"labels": {"nodeName": "n9"}}, "spec": {"containers": []}},  # not spec's
        {"spec": {"affinity": {"nodeName": "n9"}, "nodeName": "n2"}},  # nested is not it
        {"spec": {"nodeName": 7}}, {"spec": {"nodeName": None}}, {"spec": None, "x": {"nodeName": "n"}},
        {"metadata": {"nodeName": "n"}}, {"status": {"nodeName": "n"}},
        {"spec": {"a": [1, {"nodeName": "n"}], "nodeName": "n3"}},
    ]
    for obj in cases:
        stored = _stored_node(encode_object(obj))
        # None: the caller decodes (only for bytes whose spec is not a map)
        assert stored == _node_of(obj) or (stored is None and not isinstance(obj.get("spec"), dict)), obj
    assert _stored_node(encode_object({"spec": {"nodeName": "n2"}})) == "n2"
    assert _stored_node(encode_object([1, "nodeName"])) is None
    assert _stored_node(encode_object({"spec": ["nodeName", "n"]})) is None
