"""A follower announces its applies to the event loop at most every apply_notice_s
(ReplicaConfig): watchers see a burst's later writes after that, while the apply itself, a
linearizable read waiting for it and RaftStore.wake_watchers_now() do not wait; a leader
announces every apply at once. Three in-process replicas over loopback."""

from __future__ import annotations

import pytest
import trio
from helpers import open_replicas, until

from raftstore import RaftStore

pytestmark = pytest.mark.slow

# Long, so that "deferred" and "at once" are far apart even on a loaded host.
NOTICE_S = 2.0
# What "at once" must stay under here (a loaded CI host included).
PROMPT_S = 1.0


async def _cluster(tmp_path) -> list[RaftStore]:
    return await open_replicas(tmp_path, 3, apply_notice_s=NOTICE_S)


async def _watch(store: RaftStore, start: int, seen: dict[str, float]) -> None:
    async for events in store.watch("/n/", start):
        for ev in events:
            seen[ev.kv.key] = trio.current_time()


async def test_follower_batches_apply_notices_without_delaying_applies_or_reads(tmp_path):
    stores = await _cluster(tmp_path)
    try:
        await until(lambda: any(s.is_leader() for s in stores), 10)
        leader = next(s for s in stores if s.is_leader())
        follower = next(s for s in stores if s is not leader)
        await leader.put("/n/start", b"0")
        await until(lambda: follower.revision >= leader.revision, 5)
        seen_f: dict[str, float] = {}
        seen_l: dict[str, float] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch, follower, follower.revision + 1, seen_f)
            nursery.start_soon(_watch, leader, leader.revision + 1, seen_l)
            # A quiet spell longer than the notice interval (the start's applies were
            # announced within it): the next apply is announced at once.
            await trio.sleep(NOTICE_S * 1.2)
            await leader.put("/n/a", b"1")
            assert await until(lambda: "/n/a" in seen_f, PROMPT_S * 2) < PROMPT_S
            # Right after it: applied at once, announced to the follower's watchers later.
            rev_b, _ = await leader.put("/n/b", b"2")
            await until(lambda: follower.revision >= rev_b, PROMPT_S)
            assert "/n/b" not in seen_f
            # The leader's watchers are told at once.
            assert await until(lambda: "/n/b" in seen_l, PROMPT_S * 2) < PROMPT_S
            # A reader waiting for a watcher to catch up asks for the notice at once.
            follower.wake_watchers_now()
            assert await until(lambda: "/n/b" in seen_f, PROMPT_S * 2) < PROMPT_S
            # A linearizable read on the follower is not held back by a deferred notice.
            rev_c, _ = await leader.put("/n/c", b"3")
            with trio.fail_after(PROMPT_S):
                kv = await follower.get("/n/c")
            assert kv is not None and kv.mod_revision == rev_c
            # Without it, the deferred notice comes at the latest twice the interval after
            # the last one: nothing is lost.
            rev_d, _ = await leader.put("/n/d", b"4")
            await until(lambda: follower.revision >= rev_d, PROMPT_S)
            await until(lambda: "/n/d" in seen_f, NOTICE_S * 2 + PROMPT_S * 2)
            nursery.cancel_scope.cancel()
        assert list(seen_f) == ["/n/a", "/n/b", "/n/c", "/n/d"]
        assert list(seen_l) == ["/n/a", "/n/b", "/n/c", "/n/d"]
    finally:
        for s in stores:
            await s.aclose()


async def test_a_consistent_list_from_a_followers_watch_cache_does_not_wait_for_the_notice(tmp_path):
    from controlplane.registry import Registry

    stores = await _cluster(tmp_path)
    try:
        await until(lambda: any(s.is_leader() for s in stores), 10)
        leader = next(s for s in stores if s.is_leader())
        follower = next(s for s in stores if s is not leader)
        writer = Registry(leader)
        await writer.ensure_namespaces(["default"])
        reader = Registry(follower)
        async with trio.open_nursery() as nursery:
            await nursery.start(reader.serve_watch_cache)
            await until(lambda: reader.watch_cache is not None and reader.watch_cache.ready, 10)
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}
            await writer.create("configmaps", "default", {**cm, "metadata": {"name": "one"}})
            # Right after another write: the follower announces the second apply late, but a
            # consistent list (resourceVersion "") served from its cache does not wait for that.
            await writer.create("configmaps", "default", {**cm, "metadata": {"name": "two"}})
            with trio.fail_after(PROMPT_S):
                listed = await reader.list("configmaps", "default")
            assert [o["metadata"]["name"] for o in listed["items"]] == ["one", "two"]
            nursery.cancel_scope.cancel()
    finally:
        for s in stores:
            await s.aclose()
