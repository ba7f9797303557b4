"""Leadership transfer (RaftStore.transfer_leadership, Raft thesis §3.10): in-process replicas
over loopback. The leader hands over to a member holding its whole log, that member leads,
nothing acknowledged is lost, writes issued during the hand-over are answered or fail
retryably, and a transfer that cannot happen changes nothing."""

from __future__ import annotations

import pytest
import trio
from helpers import open_replicas, until

from raftstore import RaftStore, StoreError, StoreUnavailable

pytestmark = pytest.mark.slow



async def _cluster(tmp_path, n: int) -> list[RaftStore]:
    return await open_replicas(tmp_path, n, host="127.0.65.1", ports=(24500, 25000))


async def _close(stores: list[RaftStore]) -> None:
    for store in stores:
        await store.aclose()


async def _leader(stores: list[RaftStore], timeout: float = 15) -> RaftStore:
    with trio.fail_after(timeout):
        while True:
            leaders = [s for s in stores if s.is_leader()]
            if len(leaders) == 1:
                return leaders[0]
            await trio.sleep(0.01)


@pytest.mark.parametrize("members", [3, 5])
async def test_leader_hands_over_under_load_and_nothing_acknowledged_is_lost(tmp_path, members):
    stores = await _cluster(tmp_path, members)
    try:
        old = await _leader(stores)
        await old.put("/t/before", b"1")
        acked: dict[str, bytes] = {}
        failed: list[StoreError] = []
        stop = trio.Event()
        done = {f"w{k}": 0 for k in range(members)}  # writes acknowledged, per writer

        async def writer(store: RaftStore, name: str) -> None:
            i = 0
            while not stop.is_set():
                key = f"/t/{name}/{i}"
                try:
                    await store.put(key, b"%d" % i)
                    acked[key] = b"%d" % i
                    done[name] += 1
                except StoreUnavailable as exc:  # the usual retryable error, nothing else
                    failed.append(exc)
                i += 1

        async with trio.open_nursery() as nursery:
            for k, store in enumerate(stores):
                nursery.start_soon(writer, store, f"w{k}")
            await until(lambda: min(done.values()) >= 10, 10)  # every member writing
            started = trio.current_time()
            new_address = await old.transfer_leadership()
            took = trio.current_time() - started
            marks = dict(done)  # writes go on with the new leader, through every member
            await until(lambda: all(done[n] >= marks[n] + 10 for n in done), 10)
            stop.set()

        new = await _leader(stores)
        assert new is not old and new.config.self_address == new_address
        assert not old.is_leader() and old.status()["leader_address"] == new_address
        assert took < 3.0, took
        # Linearizable reads on every member, the old leader included, see every acknowledged
        # write: the hand-over lost nothing and served nothing stale.
        assert (await new.get("/t/before")).value == b"1"
        for store in stores:
            for key, value in acked.items():
                kv = await store.get(key) if store is old else await store.get(key, linearizable=False)
                if store is not old and kv is None:
                    await store.barrier()
                    kv = await store.get(key)
                assert kv is not None and kv.value == value, (store.name, key)
        # Writers on every member went on: writes acknowledged after the hand-over too.
        assert len(acked) > 20 * members
        assert len(failed) <= len(acked) // 10, failed[:3]
        # The new leader writes, and a second transfer (back, by address) works the same way.
        await new.put("/t/after", b"2")
        back = await new.transfer_leadership(old.config.self_address)
        assert back == old.config.self_address
        assert await _leader(stores) is old
        assert (await old.get("/t/after")).value == b"2"
        digests = set()
        with trio.fail_after(10):
            while len(digests) != 1:
                digests = {s.digest() for s in stores}
                await trio.sleep(0.05)
    finally:
        await _close(stores)


async def test_transfer_without_another_live_member_fails_and_changes_nothing(tmp_path):
    stores = await _cluster(tmp_path, 3)
    try:
        leader = await _leader(stores)
        term = leader.status()["term"]
        # Not the leader: refused.
        follower = next(s for s in stores if s is not leader)
        with pytest.raises(StoreError, match="not the Raft leader"):
            await follower.transfer_leadership()
        # Not a member / itself: refused before anything happens.
        with pytest.raises(StoreError, match="not a member"):
            await leader.transfer_leadership("127.0.65.1:24999")
        with pytest.raises(StoreError, match="this replica"):
            await leader.transfer_leadership(leader.config.self_address)
        # Both others gone: nobody to hand over to. The leader stays (it has no quorum now,
        # so it steps down by itself later; what matters is that nothing was handed over).
        others = [s for s in stores if s is not leader]
        for s in others:
            await s.aclose()
        with trio.fail_after(10):
            while leader.status()["members"][1]["connected"] or leader.status()["members"][2]["connected"]:
                await trio.sleep(0.05)
        with pytest.raises(StoreError, match="no other member is connected") as caught:
            await leader.transfer_leadership()
        assert not isinstance(caught.value, StoreUnavailable)
        assert leader.replica.is_raft_leader and leader.status()["term"] == term
    finally:
        await _close(stores)


async def test_single_member_cannot_hand_over(tmp_path):
    stores = await _cluster(tmp_path, 1)
    try:
        leader = await _leader(stores)
        with pytest.raises(StoreError, match="the only member"):
            await leader.transfer_leadership()
        await leader.put("/single/still", b"writes")
        assert leader.is_leader()
    finally:
        await _close(stores)


@pytest.mark.parametrize("victim", ["follower", "old leader"])
async def test_after_a_removal_the_leader_keeps_leading_steadily(tmp_path, victim):
    """Remove a follower, or the leader once it handed over (as `master remove` does): the
    leader of the two left keeps its lease throughout, in the same term. (A commit notice left
    owed to the removed member made the leader send append-entries rounds to the other one
    thousands of times a second; its lease starved and it stepped down after every removal.)"""
    stores = await _cluster(tmp_path, 3)
    try:
        leader = await _leader(stores)
        await leader.put("/r/before", b"1")
        if victim == "old leader":
            address = await leader.transfer_leadership()
            removed = leader
            leader = next(s for s in stores if s.config.self_address == address)
            with trio.fail_after(5):
                while not leader.is_leader():
                    await trio.sleep(0.01)
        else:
            removed = next(s for s in stores if s is not leader)
        term = leader.status()["term"]
        await leader.remove_member(removed.config.self_address)
        # The removed replica keeps running (its process is stopped by the operator later).
        lapses = 0
        end = trio.current_time() + 2.0
        while trio.current_time() < end:
            lapses += not leader.is_leader()
            await trio.sleep(0.01)
        assert lapses == 0 and leader.status()["term"] == term
        members = {m["address"] for m in leader.status()["members"]}
        assert removed.config.self_address not in members and len(members) == 2
        await leader.put("/r/after", b"2")
        other = next(s for s in stores if s is not leader and s is not removed)
        assert (await other.get("/r/after")).value == b"2"
        assert (await other.get("/r/before")).value == b"1"
    finally:
        await _close(stores)


async def test_target_that_does_not_catch_up_leaves_the_leader_in_place(tmp_path):
    """The target stops taking entries (a stalled follower: its replica drops every
    append-entries that carries some): the leader refuses new entries only until the catch-up
    deadline, then goes on leading in the same term; a write issued meanwhile is acknowledged
    once it resumes."""
    stores = await _cluster(tmp_path, 3)
    try:
        leader = await _leader(stores)
        await leader.put("/c/before", b"1")
        target = next(s for s in stores if s is not leader)
        handle = target.replica._on_append_entries

        def stalled(node, message):
            if not message.get("entries"):
                handle(node, message)

        term = leader.status()["term"]
        target.replica._on_append_entries = stalled  # type: ignore[method-assign]
        await leader.put("/c/lagging", b"2")  # committed by the other follower; target lacks it
        outcome: dict[str, object] = {}

        async def write_during_attempt() -> None:
            await until(lambda: leader.replica._transfer is not None, 5)  # the hand-over began
            started = trio.current_time()
            await leader.put("/c/during", b"3")
            outcome["write_s"] = trio.current_time() - started

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_during_attempt)
            with pytest.raises(StoreError, match="did not catch up") as caught:
                await leader.transfer_leadership(target.config.self_address)
        assert not isinstance(caught.value, StoreUnavailable)
        assert "leadership kept" in str(caught.value)
        assert leader.is_leader() and leader.status()["term"] == term
        # Held back while the leader waited for the target, then written as usual.
        assert 0.5 < outcome["write_s"] < 5.0
        target.replica._on_append_entries = handle  # type: ignore[method-assign]
        await leader.put("/c/after", b"4")
        assert (await target.get("/c/during")).value == b"3"
    finally:
        await _close(stores)
