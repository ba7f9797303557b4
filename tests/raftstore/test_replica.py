"""The pysyncobj binding in-process: log matching, secrets, the Store API on a real replica,
restart from snapshot + journal, and the leader's quorum lease."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing
from helpers import assert_reopens_with, until_leader
from pysyncobj.config import FAIL_REASON
from pysyncobj.node import TCPNode

from raftstore import (
    Compacted,
    Compare,
    InvalidCommand,
    Op,
    RaftStore,
    ReplicaConfig,
    StoreError,
    encode_put,
    open_raft_store,
)
from raftstore._localcluster import free_ports
from raftstore._replica import Replica

SECRET = b"test-secret-0123456789abcdef"


def _config(tmp_path, port: int, peers: tuple[str, ...] = (), **kw) -> ReplicaConfig:
    return ReplicaConfig(
        self_address=f"127.0.0.1:{port}",
        peers=peers,
        data_dir=str(tmp_path / str(port)),
        secret=SECRET,
        **kw,
    )


def test_secret_is_required_for_a_non_loopback_address(tmp_path):
    config = ReplicaConfig(self_address="10.20.30.40:21000", peers=(), data_dir=str(tmp_path))
    with pytest.raises(StoreError, match="secret is required"):
        Replica(config)


class _Follower:
    """A real, unstarted Replica whose outgoing messages are captured."""

    def __init__(self, tmp_path) -> None:
        (port,) = free_ports(1)
        self.replica = Replica(_config(tmp_path, port))
        self.sent: list[dict] = []
        self.replica._SyncObj__transport.send = lambda node, msg: self.sent.append(msg) or True
        self.leader = TCPNode("127.0.0.1:21999")

    def log(self) -> list[tuple[int, int]]:
        return [(e[1], e[2]) for e in self.replica._SyncObj__raftLog]

    def append(self, prev: tuple[int, int], entries: list[tuple[int, int]], commit: int, term=1):
        self.replica._SyncObj__onMessageReceived(
            self.leader,
            {
                "type": "append_entries",
                "term": term,
                "commit_index": commit,
                "prevLogIdx": prev[0],
                "prevLogTerm": prev[1],
                "entries": [(encode_put(f"k{i}", b"v"), i, t) for i, t in entries],
            },
        )

    def close(self) -> None:
        self.replica._doDestroy()


def test_follower_truncates_only_on_conflict_raft_5_3(tmp_path):
    f = _Follower(tmp_path)
    try:
        f.append((1, 0), [(2, 1), (3, 1), (4, 1), (5, 1)], commit=1)
        assert f.log()[-1] == (5, 1)
        # A late message re-sending entries we hold (the leader's nextIndex lagged): nothing
        # may be deleted, and the reply acknowledges what the message covered.
        f.append((2, 1), [(3, 1), (4, 1)], commit=4)
        assert f.log() == [(1, 0), (2, 1), (3, 1), (4, 1), (5, 1)]
        assert f.sent[-1]["success"] and f.sent[-1]["next_node_idx"] == 5
        assert f.replica.raftCommitIndex == 4
        # A stale heartbeat (no entries, older prevLogIdx) verifies only up to 3.
        f.append((3, 1), [], commit=5)
        assert f.log()[-1] == (5, 1)
        assert f.sent[-1]["success"] and f.sent[-1]["next_node_idx"] == 4
        assert f.replica.raftCommitIndex == 4  # not beyond what this message verified
        # A real conflict (same index, newer term) replaces the tail from that index on.
        f.append((4, 1), [(5, 2), (6, 2)], commit=4, term=2)
        assert f.log() == [(1, 0), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]
        assert f.sent[-1]["success"] and f.sent[-1]["next_node_idx"] == 7
        assert f.replica.applied_truncations == 0  # nothing applied was touched
    finally:
        f.close()


def test_follower_answers_a_forwarded_write_when_another_leader_takes_over(tmp_path):
    """The old leader answered a forwarded write with its log index, then lost leadership
    before the entry reached us. A new leader may never commit that entry (or commit it only
    once other writes fill the log up to it): the caller hears "leader changed" (outcome
    unknown) as soon as the new leader is known, not after its timeout."""
    f = _Follower(tmp_path)
    f.replica.isNodeConnected = lambda node: True  # the captured transport has no sockets
    try:
        f.append((1, 0), [(2, 1)], commit=2)
        answers: list[int] = []
        f.replica.propose(encode_put("x", b"1"), lambda result, fail: answers.append(fail))
        f.replica._checkCommandsToApply()
        forwarded = [m for m in f.sent if m.get("type") == "apply_command"]
        assert len(forwarded) == 1
        f.replica._SyncObj__onMessageReceived(
            f.leader,
            {"type": "apply_command_response", "request_id": forwarded[0]["request_id"],
             "log_idx": 3, "log_term": 1},
        )
        assert answers == []  # waits for index 3 to commit
        f.replica._SyncObj__onMessageReceived(
            TCPNode("127.0.0.1:21998"),
            {"type": "append_entries", "term": 2, "commit_index": 2, "prevLogIdx": 2,
             "prevLogTerm": 1, "entries": []},
        )
        assert answers == [FAIL_REASON.LEADER_CHANGED]
    finally:
        f.close()


@pytest.fixture
async def store(tmp_path):
    (port,) = free_ports(1)
    async with open_raft_store(_config(tmp_path, port)) as s:
        await until_leader(s)
        yield s


async def test_store_api_on_a_single_replica(store: RaftStore):
    rev, prev = await store.put("/a/1", b"one")
    assert prev is None and rev == 2
    kv = await store.get("/a/1")
    assert kv is not None and (kv.value, kv.create_revision, kv.version) == (b"one", 2, 1)
    rev2, prev2 = await store.put("/a/1", b"uno")
    assert rev2 == 3 and prev2 == kv
    txn = await store.txn(
        [Compare.mod_revision("/a/1", "==", 3)], [Op.put("/a/2", b"two"), Op.get("/a/1")], []
    )
    assert txn.succeeded and txn.revision == 4 and txn.results[1].value == b"uno"
    lost = await store.txn([Compare.mod_revision("/a/1", "==", 2)], [Op.put("/a/1", b"x")], [])
    assert not lost.succeeded and lost.revision == 4
    many = await store.txn_many(
        [([Compare.absent(f"/b/{i}")], [Op.put(f"/b/{i}", b"b")], []) for i in range(3)]
    )
    assert [t.succeeded for t in many] == [True, True, True]
    assert [t.revision for t in many] == [5, 6, 7]
    page = await store.range("/b/", limit=2)
    assert [kv.key for kv in page.kvs] == ["/b/0", "/b/1"] and page.more
    assert (await store.delete("/b/0"))[0] == 8
    assert await store.get("/b/0", linearizable=False) is None
    assert await store.barrier() == 8 == store.revision
    with pytest.raises(InvalidCommand):
        await store.put("", b"empty key")
    with pytest.raises(InvalidCommand, match="limit"):
        await store.put("/too/big", bytes(5 * 1024 * 1024))
    status = store.status()
    assert status["is_leader"] and status["revision"] == 8
    assert status["members"][0]["address"] == store.config.self_address


async def test_watch_resumes_from_a_revision_in_order(store: RaftStore):
    await store.put("/w/a", b"1")
    start = store.revision
    got = []

    async def watcher():
        async for events in store.watch("/w/", start):
            got.extend(events)
            if len(got) >= 3:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher)
        await store.put("/w/b", b"2")
        await store.put("/other", b"not watched")
        await store.delete("/w/a")
    assert [(e.type, e.kv.key) for e in got] == [
        ("PUT", "/w/a"),
        ("PUT", "/w/b"),
        ("DELETE", "/w/a"),
    ]
    assert [e.revision for e in got] == sorted(e.revision for e in got)
    assert got[2].prev_kv is not None and got[2].prev_kv.value == b"1"


async def test_watch_from_a_compacted_revision_raises(tmp_path):
    (port,) = free_ports(1)
    async with open_raft_store(_config(tmp_path, port, history_limit=5)) as s:
        await until_leader(s)
        for i in range(20):
            await s.put(f"/c/{i}", b"x")
        with pytest.raises(Compacted):
            async for _ in s.watch("/c/", 2):
                pass


async def test_restart_loads_snapshot_and_journal(tmp_path):
    (port,) = free_ports(1)
    config = _config(tmp_path, port)
    async with open_raft_store(config) as s:
        await until_leader(s)
        for i in range(200):
            await s.put(f"/r/{i}", str(i).encode())
        in_snapshot = s.revision  # the snapshot below holds at least this
        s.replica.forceLogCompaction()
        snapshot = os.path.join(config.data_dir, "raft.snapshot")
        with trio.fail_after(20):
            # The snapshot writer thread finishes, then the tick thread drops the log entries
            # the snapshot holds.
            while not os.path.exists(snapshot) or s.status()["log_first_index"] <= 1:
                await s.put("/r/tick", b"")  # compaction runs on the tick thread
                await trio.sleep(0.05)
        for i in range(200, 300):  # entries after the snapshot live only in the journal
            await s.put(f"/r/{i}", str(i).encode())
        before = s.digest()
        log_length = s.status()["log_length"]
    assert log_length < 300  # the snapshot really replaced log entries
    async with open_raft_store(config) as s:
        # Opened means loaded: even a stale read, before any election, sees at least the
        # snapshot (a restarted master must not answer from, or fill its watch cache with, an
        # empty state; journal entries past the last known commit index wait for a leader).
        assert s.revision >= in_snapshot
        kv = await s.get("/r/10", linearizable=False)
        assert kv is not None and kv.value == b"10"
        await until_leader(s)
        await s.barrier()
        assert s.digest() == before
        kv = await s.get("/r/250")
        assert kv is not None and kv.value == b"250"


@pytest.mark.slow
async def test_leader_loses_its_lease_when_cut_off_from_the_majority(tmp_path):
    ports = free_ports(3)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    stores = [
        await RaftStore.open(
            _config(tmp_path, p, peers=tuple(a for a in addresses if not a.endswith(str(p))))
        )
        for p in ports
    ]
    try:
        with trio.fail_after(10):
            while not any(s.is_leader() for s in stores):
                await trio.sleep(0.01)
        leader = next(s for s in stores if s.is_leader())
        assert sum(s.is_leader() for s in stores) == 1
        changes = leader.leadership()
        assert await changes.__anext__() is True
        for s in stores:
            if s is not leader:
                await s.aclose()  # the majority is gone
        lost_at = trio.current_time()
        with trio.fail_after(3):
            assert await changes.__anext__() is False
        # Within one lease (plus the leadership poll) of the last acknowledgement.
        assert trio.current_time() - lost_at < leader.config.lease_s + 0.3
        await changes.aclose()
        with pytest.raises(StoreError):
            await leader.barrier()
    finally:
        for s in stores:
            await s.aclose()


async def test_fsync_mode_syncs_and_recovers(tmp_path):
    (port,) = free_ports(1)
    config = _config(tmp_path, port, fsync=True)
    async with open_raft_store(config) as s:
        await until_leader(s)
        for i in range(50):
            await s.put(f"/f/{i}", b"durable")
        journal = s.replica._synced_journal
        assert journal is not None and not journal.dirty  # synced before acknowledging
        before = s.digest()
    await assert_reopens_with(config, before)


async def test_closing_the_store_ends_watches_with_a_clear_error(tmp_path):
    from raftstore import StoreUnavailable

    (port,) = free_ports(1)
    s = await RaftStore.open(_config(tmp_path, port))
    await until_leader(s)
    ended: list[BaseException] = []

    async def watch_forever():
        try:
            async for _ in s.watch("/", s.revision + 1):
                pass
        except StoreUnavailable as exc:
            ended.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_forever)
            await trio.testing.wait_all_tasks_blocked()  # the watch is subscribed and waiting
            await s.aclose()
    assert ended and "closed" in str(ended[0])


async def test_restart_after_a_crash_between_snapshot_and_journal_compaction(tmp_path, monkeypatch):
    """The snapshot is written (by the writer thread) before the journal is compacted; a crash
    in between leaves a journal that starts before the snapshot. Every entry after the
    snapshot must still be there after the restart (pysyncobj alone would drop them)."""
    from raftstore import _replica

    (port,) = free_ports(1)
    config = _config(tmp_path, port)
    with monkeypatch.context() as patch:
        # The compaction step never runs: the state a crash right after the snapshot leaves.
        patch.setattr(_replica._Journal, "deleteEntriesTo", lambda self, entry_to: None)
        async with open_raft_store(config) as s:
            await until_leader(s)
            for i in range(100):
                await s.put(f"/x/{i}", b"before")
            s.replica.forceLogCompaction()
            snapshot = os.path.join(config.data_dir, "raft.snapshot")
            with trio.fail_after(10):
                while not os.path.exists(snapshot):
                    await s.put("/x/tick", b"")
                    await trio.sleep(0.05)
            with trio.fail_after(10):  # the tick thread sees the writer done
                while s.replica._SyncObj__serializer._Serializer__pid != 0:
                    await trio.sleep(0.01)
            for i in range(100, 150):
                await s.put(f"/x/{i}", b"after")
            before = s.digest()
    async with open_raft_store(config) as s:
        await until_leader(s)
        await s.barrier()
        assert s.digest() == before
        kv = await s.get("/x/149")
        assert kv is not None and kv.value == b"after"


async def test_client_port_answers_a_write_whose_proposal_is_lost(tmp_path, monkeypatch):
    """A put taken by the client port's fast path has no task awaiting a deadline: if its
    proposal never gets an answer (a forward lost with its connection) the client still hears
    "timed out, may or may not have been applied" once the store's operation timeout passes."""
    from raftstore._client_port import serve_client_port
    from raftstore._wire import open_replica_client

    (port,) = free_ports(1)
    async with open_raft_store(_config(tmp_path, port), op_timeout=0.5) as s:
        await until_leader(s)
        replica = s.replica
        real_propose = replica.propose
        monkeypatch.setattr(replica, "propose", lambda command, callback: None)  # lost
        async with trio.open_nursery() as nursery:
            client_port = await nursery.start(serve_client_port, s, 0, SECRET)
            async with open_replica_client("127.0.0.1", client_port, SECRET) as client:
                with pytest.raises(StoreError) as caught:
                    await client.call("put", "/lost", b"1", timeout=10)
                assert caught.value.maybe_committed
                assert "timed out" in str(caught.value)
                monkeypatch.setattr(replica, "propose", real_propose)
                rev, _ = await client.call("put", "/after", b"2", timeout=10)
                assert rev > 0
            nursery.cancel_scope.cancel()
