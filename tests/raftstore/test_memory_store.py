"""MemoryStore: the in-process Store that other packages test against must behave like the real one."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from raftstore import (
    Compacted,
    Compare,
    InvalidCommand,
    MemoryStore,
    Op,
    StoreUnavailable,
)


async def test_put_get_delete_and_revisions() -> None:
    store = MemoryStore()
    assert store.revision == 1  # etcd: the empty store is revision 1
    rev, prev = await store.put("/a", b"1")
    assert (rev, prev) == (2, None)
    rev, prev = await store.put("/a", b"2")
    assert rev == 3 and prev is not None and prev.value == b"1"
    kv = await store.get("/a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", 2, 3, 2)
    assert await store.delete("/missing") == (3, None)  # no change, no new revision
    rev, prev = await store.delete("/a")
    assert rev == 4 and prev == kv
    assert await store.get("/a") is None
    assert await store.barrier() == 4


async def test_bad_input_raises_invalid_command_and_changes_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(InvalidCommand, match="value must be bytes"):
        await store.put("/a", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match="must not be empty"):
        await store.put("", b"x")
    with pytest.raises(InvalidCommand, match="unknown compare target"):
        await store.txn([Compare("/a", "color", "==", 1)], [], [])
    with pytest.raises(InvalidCommand, match="more than once"):
        await store.txn([], [Op.put("/a", b"1"), Op.delete("/a")], [])
    assert store.revision == 1


async def test_watch_resumes_from_a_revision() -> None:
    store = MemoryStore()
    for i in range(5):
        await store.put(f"/pods/p{i}", str(i).encode())
    await store.put("/nodes/n1", b"n")
    # Resume from revision 4: the puts of p2, p3, p4 (revisions 4..6), not the node.
    async for batch in store.watch("/pods/", 4):
        assert [(e.type, e.kv.key, e.revision) for e in batch] == [
            ("PUT", "/pods/p2", 4),
            ("PUT", "/pods/p3", 5),
            ("PUT", "/pods/p4", 6),
        ]
        break


async def test_watch_sees_live_events_in_order_with_prev_kv() -> None:
    store = MemoryStore()
    seen: list[tuple[str, str, int, bytes | None]] = []
    start = store.revision + 1

    async def watcher(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for batch in store.watch("/x/", start):
            assert batch, "batches are never empty"
            for e in batch:
                seen.append((e.type, e.kv.key, e.revision, e.prev_kv.value if e.prev_kv else None))
            if len(seen) >= 4:
                return

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher)
            await store.put("/x/a", b"1")
            await store.put("/y/ignored", b"1")
            await store.put("/x/a", b"2")
            await store.txn([], [Op.delete_prefix("/x/"), Op.put("/y/z", b"9")], [])
            await store.put("/x/b", b"3")
    assert seen == [
        ("PUT", "/x/a", 2, None),
        ("PUT", "/x/a", 4, b"1"),
        ("DELETE", "/x/a", 5, b"2"),
        ("PUT", "/x/b", 6, None),
    ]


async def test_many_watchers_all_get_every_event() -> None:
    store = MemoryStore()
    n_watchers, n_writes = 20, 50
    received: dict[int, list[int]] = {i: [] for i in range(n_watchers)}

    async def watcher(i: int) -> None:
        async for batch in store.watch("", 2):
            received[i].extend(e.revision for e in batch)
            if len(received[i]) == n_writes:
                return

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(n_watchers):
                nursery.start_soon(watcher, i)
            for j in range(n_writes):
                await store.put(f"/k{j % 7}", b"v")
                if j % 10 == 0:
                    await trio.sleep(0)  # let watchers interleave with writes
    expected = list(range(2, 2 + n_writes))
    assert all(revs == expected for revs in received.values())


async def test_watch_from_compacted_revision_raises() -> None:
    store = MemoryStore(history_limit=10)
    for i in range(30):
        await store.put(f"/k{i}", b"v")
    assert store.compact_revision == 31 - 10
    with pytest.raises(Compacted) as info:
        async for _ in store.watch("", store.compact_revision):
            pass
    assert info.value.compact_revision == store.compact_revision
    assert info.value.requested == store.compact_revision
    # One past the compaction point is still complete.
    async for batch in store.watch("", store.compact_revision + 1):
        assert [e.revision for e in batch] == list(range(store.compact_revision + 1, 32))
        break


async def test_watcher_that_falls_behind_gets_compacted() -> None:
    store = MemoryStore(history_limit=5)
    watch = store.watch("", 2)
    await store.put("/a", b"1")
    first = await watch.__anext__()
    assert [e.revision for e in first] == [2]
    for _ in range(20):
        await store.put("/a", b"x")
    with pytest.raises(Compacted):
        await watch.__anext__()


async def test_cas_increment_under_concurrency_exactly_n_succeed() -> None:
    store = MemoryStore()
    await store.put("/counter", b"0")
    n_tasks, per_task = 25, 8
    attempts = 0
    successes = 0

    async def incrementer() -> None:
        nonlocal attempts, successes
        done = 0
        while done < per_task:
            kv = await store.get("/counter")
            assert kv is not None
            await trio.sleep(0)  # widen the read-modify-write window so CAS conflicts happen
            attempts += 1
            result = await store.txn(
                [Compare.mod_revision("/counter", "==", kv.mod_revision)],
                [Op.put("/counter", str(int(kv.value) + 1).encode())],
                [Op.get("/counter")],
            )
            if result.succeeded:
                successes += 1
                done += 1
            else:
                assert result.results[0].mod_revision > kv.mod_revision

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(n_tasks):
                nursery.start_soon(incrementer)
    kv = await store.get("/counter")
    assert kv is not None
    assert successes == n_tasks * per_task
    assert int(kv.value) == n_tasks * per_task
    assert kv.version == n_tasks * per_task + 1
    assert attempts > successes, "the test must actually produce CAS conflicts"


async def test_txn_many_is_one_command_each_txn_its_own_revision() -> None:
    store = MemoryStore()
    results = await store.txn_many(
        [
            ([Compare.absent("/b/1")], [Op.put("/b/1", b"x")], []),
            ([Compare.absent("/b/1")], [Op.put("/b/1", b"y")], [Op.get("/b/1")]),
            ([], [Op.put("/b/2", b"z")], []),
        ]
    )
    assert [(r.succeeded, r.revision) for r in results] == [(True, 2), (False, 2), (True, 3)]
    assert results[1].results[0].value == b"x"
    assert store.status()["applied_index"] == 1


async def test_range_pagination() -> None:
    store = MemoryStore()
    for i in range(10):
        await store.put(f"/p/{i:02d}", b"v")
    await store.put("/q", b"v")
    page1 = await store.range("/p/", limit=4)
    assert [kv.key for kv in page1.kvs] == ["/p/00", "/p/01", "/p/02", "/p/03"] and page1.more
    page3 = await store.range("/p/", limit=4, start_after="/p/07")
    assert [kv.key for kv in page3.kvs] == ["/p/08", "/p/09"] and not page3.more
    assert page3.revision == store.revision


async def test_leadership_and_availability_simulation() -> None:
    store = MemoryStore()
    values: list[bool] = []

    async def follow(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async for leader in store.leadership():
            values.append(leader)
            if len(values) == 1:
                task_status.started()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(follow)
            assert store.is_leader()
            store.set_available(False)
            await trio.testing.wait_all_tasks_blocked()
            assert not store.is_leader()
            with pytest.raises(StoreUnavailable):
                await store.put("/a", b"1")
            with pytest.raises(StoreUnavailable):
                await store.get("/a")
            assert await store.get("/a", linearizable=False) is None  # local reads still answer
            store.set_available(True)
            await trio.testing.wait_all_tasks_blocked()
            await store.aclose()
    assert values == [True, False, True, False]


async def test_closed_store_ends_watches_and_rejects_calls() -> None:
    store = MemoryStore()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def watcher() -> None:
                with pytest.raises(StoreUnavailable, match="closed"):
                    async for _ in store.watch("", 2):
                        pass

            nursery.start_soon(watcher)
            await trio.testing.wait_all_tasks_blocked()
            await store.aclose()
    with pytest.raises(StoreUnavailable):
        await store.put("/a", b"1")
