"""The registry's watch cache (controlplane/_watchcache.py) answers as the store does.

Every check runs the same calls with and without the cache, or states a Kubernetes rule the
cache must keep: list and watch resourceVersion semantics (a consistent read reflects every
write acknowledged before it), resuming a watch from a revision, 410 for a watcher that fell
too far behind, the node index (spec.nodeName=NODE) giving exactly that node's pods.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from controlplane import _asof, _watchcache
from controlplane.errors import ApiError
from controlplane.registry import Registry
from raftstore import MemoryStore


def _pod(name: str, node: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}}, "spec": spec}


async def _registry(nursery: trio.Nursery, cached: bool) -> Registry:
    registry = Registry(MemoryStore())
    if cached:
        await nursery.start(registry.serve_watch_cache)
        assert registry.watch_cache is not None
        await _until(lambda: registry.watch_cache.ready)  # type: ignore[union-attr]
    await registry.ensure_namespaces()
    return registry


def _names(listed: dict[str, Any]) -> list[str]:
    return [p["metadata"]["name"] for p in listed["items"]]


async def _collect(registry: Registry, out: list[tuple[str, str, str]], **kw: Any) -> None:
    async for batch in registry.watch("pods", "default", **kw):
        out.extend((ev.type, ev.object["metadata"]["name"], ev.object["metadata"]["resourceVersion"])
                   for ev in batch)


async def _until(cond: Any) -> None:
    with trio.fail_after(5):
        while not cond():
            await trio.sleep(0.01)


@pytest.mark.parametrize("cached", [False, True])
async def test_lists_answer_the_same_with_and_without_the_cache(nursery: trio.Nursery, cached: bool) -> None:
    reg = await _registry(nursery, cached)
    for i in range(6):
        await reg.create("pods", "default", _pod(f"p{i}", f"n{i % 2}", {"i": str(i % 3)}))
    # A consistent list (resourceVersion unset) reflects every acknowledged write at once.
    last = await reg.create("pods", "default", _pod("zz", "n1"))
    listed = await reg.list("pods", "default", field_selector="spec.nodeName=n1")
    assert _names(listed) == ["p1", "p3", "p5", "zz"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(last["metadata"]["resourceVersion"])
    assert _names(await reg.list("pods", None, label_selector="i=0")) == ["p0", "p3"]
    assert _names(await reg.list("pods", "default", field_selector="spec.nodeName=n0,metadata.name!=p2")) == ["p0", "p4"]
    assert _names(await reg.list("pods", "kube-system")) == []
    assert _names(await reg.list("pods", "default", resource_version="0")) == ["p0", "p1", "p2", "p3", "p4", "p5", "zz"]
    # Pages: the first page, then the rest by the continue token.
    page = await reg.list("pods", "default", limit=4)
    assert _names(page) == ["p0", "p1", "p2", "p3"]
    rest = await reg.list("pods", "default", limit=4, continue_token=page["metadata"]["continue"])
    assert _names(rest) == ["p4", "p5", "zz"] and "continue" not in rest["metadata"]
    # resourceVersion rules are checked before anything is served.
    with pytest.raises(ApiError) as exc:
        await reg.list("pods", "default", resource_version="0", resource_version_match="Exact")
    assert exc.value.code == 400
    with pytest.raises(ApiError) as exc:
        await reg.list("pods", "default", resource_version="999999")
    assert exc.value.code == 504  # "Too large resource version", as Kubernetes answers


@pytest.mark.parametrize("cached", [False, True])
async def test_node_watch_through_binding_status_and_deletion(nursery: trio.Nursery, cached: bool) -> None:
    reg = await _registry(nursery, cached)
    await reg.create("pods", "default", _pod("early", "n1"))
    n1: list[tuple[str, str, str]] = []
    n2: list[tuple[str, str, str]] = []
    nursery.start_soon(lambda: _collect(reg, n1, field_selector="spec.nodeName=n1"))
    nursery.start_soon(lambda: _collect(reg, n2, field_selector="spec.nodeName=n2"))
    await _until(lambda: n1)
    assert n1[0][:2] == ("ADDED", "early")  # no resourceVersion: the current state first
    await reg.create("pods", "default", _pod("late"))
    await reg.bind("default", "late", {"target": {"kind": "Node", "name": "n1"}})
    pod = await reg.get("pods", "default", "late")
    await reg.update_status("pods", "default", "late", {**pod, "status": {"phase": "Running"}})
    await reg.delete("pods", "default", "late", grace_period_seconds=0)
    await _until(lambda: ("DELETED", "late") in [e[:2] for e in n1])
    assert [e[:2] for e in n1] == [("ADDED", "early"), ("ADDED", "late"), ("MODIFIED", "late"), ("DELETED", "late")]
    revisions = [int(e[2]) for e in n1]
    assert revisions == sorted(revisions)
    assert n2 == []


@pytest.mark.parametrize("cached", [False, True])
async def test_watch_resumes_from_a_revision(nursery: trio.Nursery, cached: bool) -> None:
    reg = await _registry(nursery, cached)
    first = await reg.create("pods", "default", _pod("a", "n1"))
    await reg.create("pods", "default", _pod("b", "n2"))
    await reg.create("pods", "default", _pod("c", "n1"))
    seen: list[tuple[str, str, str]] = []
    nursery.start_soon(lambda: _collect(reg, seen, resource_version=first["metadata"]["resourceVersion"],
                                        field_selector="spec.nodeName=n1"))
    await _until(lambda: seen)
    await reg.delete("pods", "default", "a", grace_period_seconds=0)
    await _until(lambda: len(seen) == 2)
    assert [e[:2] for e in seen] == [("ADDED", "c"), ("DELETED", "a")]


async def test_a_watcher_too_far_behind_gets_410(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_watchcache, "MAX_PENDING", 3)
    reg = await _registry(nursery, True)
    start = str(reg.store.revision)
    errors: list[ApiError] = []
    batches: list[int] = []
    go_on = trio.Event()

    async def slow() -> None:
        try:
            async for batch in reg.watch("pods", "default", resource_version=start):
                batches.append(len(batch))
                await go_on.wait()  # a client that stops reading for a while
        except ApiError as exc:
            errors.append(exc)

    nursery.start_soon(slow)
    await reg.create("pods", "default", _pod("p0", "n1"))
    await _until(lambda: batches)
    for i in range(1, 8):
        await reg.create("pods", "default", _pod(f"p{i}", "n1"))
    go_on.set()
    await _until(lambda: errors)
    assert errors[0].code == 410


async def test_cached_watch_of_an_old_revision_falls_back_to_the_store(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_watchcache, "HISTORY_PER_RESOURCE", 4)
    reg = await _registry(nursery, True)
    first = await reg.create("pods", "default", _pod("p0", "n1"))
    for i in range(1, 8):
        await reg.create("pods", "default", _pod(f"p{i}", "n1"))
    seen: list[tuple[str, str, str]] = []
    nursery.start_soon(lambda: _collect(reg, seen, resource_version=first["metadata"]["resourceVersion"]))
    await _until(lambda: len(seen) == 7)
    assert [e[1] for e in seen] == [f"p{i}" for i in range(1, 8)]


async def test_bookmarks_and_initial_events_from_the_cache(nursery: trio.Nursery) -> None:
    reg = await _registry(nursery, True)
    await reg.create("pods", "default", _pod("a", "n1"))
    seen: list[Any] = []

    async def collect() -> None:
        async for batch in reg.watch("pods", "default", send_initial_events=True, resource_version=""):
            seen.extend(batch)

    nursery.start_soon(collect)
    await _until(lambda: len(seen) == 2)
    assert [e.type for e in seen] == ["ADDED", "BOOKMARK"]
    assert seen[1].object["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(seen[1].object["metadata"]["resourceVersion"]) >= int(seen[0].object["metadata"]["resourceVersion"])


async def test_a_large_batch_is_applied_in_slices_each_a_whole_revision(nursery: trio.Nursery,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # One Raft entry of 40 creates reaches the cache as one batch; applied 4 events at a time,
    # with the event loop free in between, and every list served meanwhile is the state at
    # its resourceVersion: exactly the pods created up to it.
    monkeypatch.setattr(_watchcache, "APPLY_SLICE", 4)
    reg = await _registry(nursery, True)
    seen: list[tuple[int, list[int]]] = []
    node_events: list[tuple[str, str, str]] = []
    nursery.start_soon(lambda: _collect(reg, node_events, field_selector="spec.nodeName=n1"))

    async def lister() -> None:
        while True:
            listed = await reg.list("pods", "default", resource_version="0")
            seen.append((int(listed["metadata"]["resourceVersion"]),
                         sorted(int(p["metadata"]["resourceVersion"]) for p in listed["items"])))
            await trio.lowlevel.checkpoint()

    nursery.start_soon(lister)
    await _until(lambda: seen)
    created = await reg.create_many("pods", [("default", _pod(f"p{i}", "n1")) for i in range(40)])
    revisions = sorted(int(p["metadata"]["resourceVersion"]) for p in created)  # type: ignore[index]
    await _until(lambda: len(seen[-1][1]) == 40)
    partial = {len(pods) for _, pods in seen if 0 < len(pods) < 40}
    assert partial  # lists were served between slices
    for rv, pods in seen:
        assert pods == [r for r in revisions if r <= rv]
    await _until(lambda: len(node_events) == 40)
    assert [e[0] for e in node_events] == ["ADDED"] * 40


# ---------------------------------------------------------------- list pages as of the first page

# How a list's continue pages are read: by the store alone (no cache), from the cache's history,
# or by the store's history because the cache's no longer reaches back (a cache history of 2).
_PAGE_SOURCES = ["store", "cache", "cache-history-too-short"]


async def _paging_registry(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, source: str,
                           history_limit: int = 100_000) -> Registry:
    if source == "cache-history-too-short":
        monkeypatch.setattr(_watchcache, "HISTORY_PER_RESOURCE", 2)
    # The store's history is recorded a few events at a time, with yields in between (and
    # writes may come in there): the pages must be the same.
    monkeypatch.setattr(_asof, "RECORD_SLICE", 3)
    registry = Registry(MemoryStore(history_limit=history_limit))
    if source != "store":
        await nursery.start(registry.serve_watch_cache)
        await _until(lambda: registry.watch_cache.ready)  # type: ignore[union-attr]
    await registry.ensure_namespaces()
    return registry


def _seen(items: list[dict[str, Any]]) -> list[tuple[str, str, str, dict[str, str], str | None]]:
    """What a user compares between two lists: each object's name, version, identity, labels, node."""
    return [(p["metadata"]["name"], p["metadata"]["resourceVersion"], p["metadata"]["uid"],
             p["metadata"].get("labels") or {}, p["spec"].get("nodeName")) for p in items]


async def _page_through(reg: Registry, first: dict[str, Any], changes: list[Any], **kw: Any) -> list[dict[str, Any]]:
    """The items of a list in pages from ``first``, running ``changes[i]`` before page i + 2; every
    page must carry the first page's resourceVersion (and so must its continue token)."""
    items = list(first["items"])
    token = first["metadata"].get("continue")
    pages = 0
    while token:
        if pages < len(changes):
            await changes[pages]()
        page = await reg.list("pods", "default", continue_token=token, **kw)
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        items += page["items"]
        token = page["metadata"].get("continue")
        pages += 1
    assert pages >= len(changes)  # every change happened while the list was being paged
    return items


async def _relabel(reg: Registry, name: str, labels: dict[str, str]) -> None:
    pod = await reg.get("pods", "default", name)
    await reg.update("pods", "default", name, {**pod, "metadata": {**pod["metadata"], "labels": labels}})


@pytest.mark.parametrize("source", _PAGE_SOURCES)
async def test_list_pages_show_the_objects_as_of_the_first_page(
        nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    # Kubernetes API conventions, "Retrieving large results sets in chunks": every chunk of a list
    # is served at the first chunk's resourceVersion, so the pages together are one consistent
    # list. Creates, updates and deletes between the pages must not show.
    reg = await _paging_registry(nursery, monkeypatch, source)
    for i in range(10):
        await reg.create("pods", "default", _pod(f"p{i}", f"n{i % 2}", {"tier": "a" if i % 3 else "b"}))
    expected = await reg.list("pods", "default")
    first = await reg.list("pods", "default", limit=3)
    assert first["metadata"]["resourceVersion"] == expected["metadata"]["resourceVersion"]

    async def change_1() -> None:
        await reg.delete("pods", "default", "p5", grace_period_seconds=0)  # later page: must still be listed
        await reg.create("pods", "default", _pod("p45"))  # created after: must not be listed
        await _relabel(reg, "p7", {"tier": "c"})  # updated: listed as it was
        await reg.delete("pods", "default", "p1", grace_period_seconds=0)  # already listed

    async def change_2() -> None:
        await reg.delete("pods", "default", "p8", grace_period_seconds=0)  # deleted and created again
        await reg.create("pods", "default", _pod("p8", "n1", {"tier": "new"}))
        await reg.create("pods", "default", _pod("p75"))  # created and deleted between pages
        await reg.delete("pods", "default", "p75", grace_period_seconds=0)
        await _relabel(reg, "p9", {"tier": "d"})
        await _relabel(reg, "p9", {"tier": "e"})  # two changes: the value before the first
        await reg.create("pods", "default", _pod("zz"))

    items = await _page_through(reg, first, [change_1, change_2], limit=3)
    assert _seen(items) == _seen(expected["items"])
    if source != "store":  # (the source this case is about served the last page)
        reaches = reg.watch_cache._resources["pods"].replays_from(  # type: ignore[union-attr]
            int(first["metadata"]["resourceVersion"]) + 1)
        assert reaches == (source == "cache")
    # the present is different (so the pages above did not just happen to agree with it)
    now = _names(await reg.list("pods", "default"))
    assert now == ["p0", "p2", "p3", "p4", "p45", "p6", "p7", "p8", "p9", "zz"]
    # A list started now pages through the present, and a watch from the old list's
    # resourceVersion sees every change made while it was paged.
    assert _names({"items": await _page_through(reg, await reg.list("pods", "default", limit=4), [])}) == now
    events: list[tuple[str, str, str]] = []
    nursery.start_soon(lambda: _collect(reg, events, resource_version=first["metadata"]["resourceVersion"]))
    await _until(lambda: len(events) >= 11)
    assert [e[:2] for e in events] == [
        ("DELETED", "p5"), ("ADDED", "p45"), ("MODIFIED", "p7"), ("DELETED", "p1"), ("DELETED", "p8"), ("ADDED", "p8"),
        ("ADDED", "p75"), ("DELETED", "p75"), ("MODIFIED", "p9"), ("MODIFIED", "p9"), ("ADDED", "zz")]


@pytest.mark.parametrize("source", _PAGE_SOURCES)
async def test_list_pages_with_selectors_match_the_objects_as_they_were(
        nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    # Selectors and limit apply to the objects as of the list's resourceVersion: an object that
    # matched then is listed even if it no longer matches, one that matches only since is not.
    reg = await _paging_registry(nursery, monkeypatch, source)
    for i in range(12):
        await reg.create("pods", "default", _pod(f"p{i:02}", f"n{i % 2}", {"tier": "a" if i % 3 else "b"}))
    by_label = await reg.list("pods", "default", label_selector="tier=a")
    by_node = await reg.list("pods", "default", field_selector="spec.nodeName=n1")
    first_label = await reg.list("pods", "default", label_selector="tier=a", limit=2)
    first_node = await reg.list("pods", "default", field_selector="spec.nodeName=n1", limit=2)
    assert {first_label["metadata"]["resourceVersion"], first_node["metadata"]["resourceVersion"]} == {
        by_label["metadata"]["resourceVersion"]}

    async def change() -> None:
        await _relabel(reg, "p04", {"tier": "b"})  # matched then: still listed
        await _relabel(reg, "p06", {"tier": "a"})  # matches only now: not listed
        await reg.delete("pods", "default", "p07", grace_period_seconds=0)  # on n1 then: still listed
        await reg.create("pods", "default", _pod("p08x", "n1", {"tier": "a"}))  # new on n1: not listed
        for i in range(4):  # (more history than the short cache history holds)
            await _relabel(reg, "p00", {"tier": f"x{i}"})

    pages_label = await _page_through(reg, first_label, [change], label_selector="tier=a", limit=2)
    assert _seen(pages_label) == _seen(by_label["items"])
    pages_node = await _page_through(reg, first_node, [], field_selector="spec.nodeName=n1", limit=2)
    assert _seen(pages_node) == _seen(by_node["items"])
    assert _names(by_node) == ["p01", "p03", "p05", "p07", "p09", "p11"]
    assert "p06" not in _names(by_label) and "p04" in _names(by_label)


@pytest.mark.parametrize("source", _PAGE_SOURCES)
async def test_a_continue_token_older_than_every_history_is_410_expired(
        nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    reg = await _paging_registry(nursery, monkeypatch, source, history_limit=5)
    for i in range(4):
        await reg.create("pods", "default", _pod(f"p{i}"))
    first = await reg.list("pods", "default", limit=2)
    for i in range(8):
        await _relabel(reg, "p3", {"n": str(i)})
    if source == "cache":  # the cache's history (pods only) reaches back further than the store's
        rest = await reg.list("pods", "default", limit=2, continue_token=first["metadata"]["continue"])
        assert [p["metadata"].get("labels") for p in rest["items"]] == [{}, {}]
        return
    with pytest.raises(ApiError) as exc:
        await reg.list("pods", "default", limit=2, continue_token=first["metadata"]["continue"])
    assert (exc.value.code, exc.value.reason) == (410, "Expired")
    assert exc.value.message.startswith(
        "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter, or use the continue token in this response")
    # Kubernetes' inconsistent continue: the keys after p1 as they are now, then one snapshot
    inconsistent = exc.value.status()["metadata"]["continue"]
    rest = await reg.list("pods", "default", limit=1, continue_token=inconsistent)
    assert rest["metadata"]["resourceVersion"] == str(reg.store.revision)
    await _relabel(reg, "p3", {"n": "after"})
    rest_items = await _page_through(reg, rest, [], limit=1)
    assert [(p["metadata"]["name"], p["metadata"].get("labels")) for p in rest_items] == [
        ("p2", {}), ("p3", {"n": "7"})]


async def test_continue_rejects_a_resource_version_and_a_forged_revision(nursery: trio.Nursery) -> None:
    reg = await _registry(nursery, True)
    for i in range(3):
        await reg.create("pods", "default", _pod(f"p{i}"))
    token = (await reg.list("pods", "default", limit=1))["metadata"]["continue"]
    # Kubernetes: the list's resourceVersion is the token's; "0" (any) is tolerated
    with pytest.raises(ApiError) as exc:
        await reg.list("pods", "default", limit=1, continue_token=token, resource_version="5")
    assert (exc.value.code, exc.value.message) == (400, "specifying resource version is not allowed when using continue")
    with pytest.raises(ApiError) as exc:
        await reg.list("pods", "default", limit=1, continue_token=token, resource_version="0",
                       resource_version_match="NotOlderThan")
    assert (exc.value.code, exc.value.message) == (400, "resourceVersionMatch is forbidden when continue is provided")
    assert _names(await reg.list("pods", "default", limit=1, continue_token=token, resource_version="0")) == ["p1"]
    # a token naming a revision the store has not reached was not issued by it
    forged = Registry._encode_continue(reg.store.revision + 100, "/registry/pods/default/p0")
    with pytest.raises(ApiError) as exc:
        await reg.list("pods", "default", limit=1, continue_token=forged)
    assert exc.value.code == 400 and "continue key is not valid" in exc.value.message
