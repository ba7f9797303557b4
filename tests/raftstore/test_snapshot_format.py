"""What a snapshot holds of the KVState (its pickled layout) and how snapshot files are read.

The state's own round trip (every key, revision and event, and applying on after it) is
property-tested in test_state_model; here: older snapshots still load, objects shared in memory
stay shared (written once, one object again after loading), and the snapshot file format."""

from __future__ import annotations

import gzip
import os
import pickle
import threading
import time
from typing import Any

import trio
from helpers import assert_reopens_with, until_leader

from raftstore import KVState, ReplicaConfig, _replica, encode_delete, encode_put, open_raft_store
from raftstore._localcluster import free_ports


def _filled(history_limit: int = 100) -> KVState:
    state = KVState(history_limit)
    for i in range(20):
        state.apply(encode_put(f"/registry/pods/default/p{i % 7}", f"value {i}".encode() * 20))
    state.apply(encode_delete("/registry/pods/default/p3"))
    state.apply(encode_put("/registry/pods/default/p3", b"re-created"))
    return state


def _format_1(state: KVState) -> dict[str, Any]:
    """The layout snapshots had before format 2 (a tuple per key, two per event)."""

    def flat(kv: Any) -> Any:
        if kv is None:
            return None
        return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version)

    return {
        "format": 1,
        "history_limit": state.history_limit,
        "revision": state.revision,
        "compact_revision": state.compact_revision,
        "kvs": [flat(kv) for kv in state.range("").kvs],
        "events": [
            (e.type, flat(e.kv), flat(e.prev_kv), e.revision)
            for e in state.events_since(state.compact_revision + 1)
        ],
    }


def _same_state(a: KVState, b: KVState) -> None:
    assert (a.revision, a.compact_revision, a.history_limit) == (
        b.revision,
        b.compact_revision,
        b.history_limit,
    )
    assert a.digest() == b.digest()
    assert a.range("") == b.range("")
    assert a.events_since(a.compact_revision + 1) == b.events_since(b.compact_revision + 1)


def test_a_format_1_snapshot_still_loads() -> None:
    state = _filled(history_limit=10)  # some history dropped: compact_revision > 0
    assert state.compact_revision > 0
    loaded = KVState.__new__(KVState)
    loaded.__setstate__(_format_1(state))
    _same_state(loaded, state)
    loaded.apply(encode_put("/registry/pods/default/p1", b"after"))
    state.apply(encode_put("/registry/pods/default/p1", b"after"))
    _same_state(loaded, state)


def test_an_unknown_format_is_refused() -> None:
    state = KVState.__new__(KVState)
    try:
        state.__setstate__({"format": 99})
    except ValueError as exc:
        assert "format 99" in str(exc)
    else:
        raise AssertionError("an unknown snapshot format was accepted")


def test_shared_objects_are_written_once_and_shared_after_loading() -> None:
    state = KVState()
    big = [bytes([i]) * 10_000 for i in range(5)]
    for i, value in enumerate(big):
        state.apply(encode_put(f"/k{i}", value))  # live and in its event: one object
    state.apply(encode_put("/k0", b"new"))  # the old /k0 is now only in history (twice)
    blob = pickle.dumps(state, protocol=5)
    # Each 10 kB value once (plus a little): not once per event or key that holds it.
    assert 50_000 < len(blob) < 53_000
    loaded = pickle.loads(blob)
    _same_state(loaded, state)
    events = loaded.events_since(1)
    for e in events[:5]:
        assert e.kv is loaded.get(e.kv.key) or e.kv.key == "/k0"
    # The new /k0's prev_kv is the very object the first put's event holds.
    assert events[5].prev_kv is events[0].kv
    assert events[5].kv is loaded.get("/k0")


def test_a_delete_and_a_re_create_survive_a_round_trip() -> None:
    state = _filled()
    loaded = pickle.loads(pickle.dumps(state, protocol=5))
    _same_state(loaded, state)
    delete, create = loaded.events_since(state.revision - 1)
    assert (delete.type, delete.kv.value, delete.kv.version) == ("DELETE", b"", 0)
    assert delete.prev_kv is not None and delete.prev_kv.value == b"value 17" * 20
    assert (create.type, create.prev_kv, create.kv.version) == ("PUT", None, 1)
    assert create.kv is loaded.get("/registry/pods/default/p3")


# --- snapshot files of a real replica -------------------------------------------------------


def _single_replica(data_dir: Any, **config: Any) -> ReplicaConfig:
    """A one-member cluster on a free loopback port, its data in ``data_dir``; ``config``:
    further ReplicaConfig fields."""
    (port,) = free_ports(1)
    return ReplicaConfig(
        self_address=f"127.0.0.1:{port}", peers=(), data_dir=str(data_dir), **config
    )


async def _snapshotted_store(config: ReplicaConfig) -> tuple[str, int]:
    """Writes 100 keys, takes a snapshot (waiting until it is written and the log compacted),
    writes 20 more (journal only); returns the digest and the snapshot's revision."""
    snapshot = os.path.join(config.data_dir, "raft.snapshot")
    async with open_raft_store(config) as s:
        await until_leader(s)
        for i in range(100):
            await s.put(f"/s/{i}", f"value {i}".encode() * 10)
        in_snapshot = s.revision
        s.replica.forceLogCompaction()
        with trio.fail_after(20):
            while not os.path.exists(snapshot) or s.status()["log_first_index"] <= 1:
                await s.put("/s/tick", b"")  # compaction runs on the tick thread
                await trio.sleep(0.05)
        for i in range(100, 120):
            await s.put(f"/s/{i}", b"after the snapshot")
        return s.digest(), in_snapshot


async def _assert_restarts_into(config: ReplicaConfig, digest: str, in_snapshot: int) -> None:
    async with open_raft_store(config) as s:
        assert s.revision >= in_snapshot  # loaded from the snapshot before serving
        await until_leader(s)
        await s.barrier()
        assert s.digest() == digest
        kv = await s.get("/s/119")
        assert kv is not None and kv.value == b"after the snapshot"


async def test_snapshot_is_zstd_and_read_once_on_restart(tmp_path, monkeypatch):
    config = _single_replica(tmp_path)
    digest, in_snapshot = await _snapshotted_store(config)
    with open(tmp_path / "raft.snapshot", "rb") as f:
        assert f.read(4) == b"\x28\xb5\x2f\xfd"  # a zstd frame
    reads = []
    real = _replica._SnapshotCodec.GzipFile

    def counting(*, fileobj: Any, mode: str = "rb") -> Any:
        if not mode.startswith("w"):
            reads.append(fileobj.name)
        return real(fileobj=fileobj, mode=mode)

    monkeypatch.setattr(_replica._SnapshotCodec, "GzipFile", staticmethod(counting))
    await _assert_restarts_into(config, digest, in_snapshot)
    # Unpickling a full-size state takes about a second: once per start, not twice.
    assert reads == [str(tmp_path / "raft.snapshot")]


async def test_a_gzip_snapshot_of_an_older_release_is_loaded(tmp_path, monkeypatch):
    config = _single_replica(tmp_path)
    digest, in_snapshot = await _snapshotted_store(config)
    path = tmp_path / "raft.snapshot"
    with open(path, "rb") as f:
        data = pickle.load(_replica._SnapshotCodec.GzipFile(fileobj=f))
    # Rewrite it as an older release did: gzip, the state in format 1, pickle protocol 2.
    with monkeypatch.context() as patch, gzip.open(path, "wb") as f:
        patch.setattr(KVState, "__getstate__", _format_1)
        pickle.dump(data, f, protocol=2)
    await _assert_restarts_into(config, digest, in_snapshot)


async def test_a_file_that_is_no_snapshot_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "raft.snapshot"
    path.write_bytes(b"PK\x03\x04 not a snapshot")
    with open(path, "rb") as f:
        try:
            _replica._SnapshotCodec.GzipFile(fileobj=f)
        except ValueError as exc:
            assert "not a snapshot file" in str(exc)
        else:
            raise AssertionError("a zip file was taken for a snapshot")


def test_a_frozen_view_pickles_the_state_as_it_was_when_taken() -> None:
    state = _filled()
    before = pickle.loads(pickle.dumps(state, protocol=5))
    view = state.frozen_view()
    for i in range(50):  # applies go on while the snapshot writer pickles the view
        state.apply(encode_put(f"/registry/pods/default/p{i % 9}", b"later"))
    state.apply(encode_delete("/registry/pods/default/p1"))
    _same_state(pickle.loads(pickle.dumps(view, protocol=5)), before)
    assert pickle.loads(pickle.dumps(view, protocol=5)).digest() != state.digest()


async def test_the_snapshot_is_written_without_fork_while_writes_go_on(tmp_path, monkeypatch):
    def no_fork() -> int:
        raise AssertionError("the snapshot writer forked")

    monkeypatch.setattr(os, "fork", no_fork)
    # fsync=True: the snapshot is fsync'ed before the journal is compacted (same outcome).
    config = _single_replica(tmp_path, fsync=True)
    digest, in_snapshot = await _snapshotted_store(config)
    await _assert_restarts_into(config, digest, in_snapshot)


def _hold_the_writer(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The snapshot writer stops before its first byte until ``release`` is set."""
    writing, release = threading.Event(), threading.Event()
    real = _replica._SnapshotCodec.GzipFile

    def held(*, fileobj: Any, mode: str = "rb") -> Any:
        if mode.startswith("w"):
            writing.set()
            release.wait(10)
        return real(fileobj=fileobj, mode=mode)

    monkeypatch.setattr(_replica._SnapshotCodec, "GzipFile", staticmethod(held))
    return writing, release


async def _until_writing(s: Any, writing: threading.Event) -> None:
    s.replica.forceLogCompaction()
    with trio.fail_after(10):
        while not writing.is_set():
            await s.put("/t/tick", b"")  # compaction runs on the tick thread
            await trio.sleep(0.02)


async def _until_written(s: Any) -> None:
    with trio.fail_after(10):
        while s.replica._SyncObj__serializer._Serializer__pid != 0:
            await s.put("/t/tick", b"")
            await trio.sleep(0.02)


async def test_a_snapshot_superseded_by_the_leaders_is_dropped(tmp_path, monkeypatch):
    """A follower that loads a snapshot sent by the leader while it writes one of its own
    (older) state must not rename its own over the leader's, nor compact its log to it: after
    a restart the journal (cleared to the leader's snapshot) would not follow on from it."""
    config = _single_replica(tmp_path)
    await _snapshotted_store(config)
    path = tmp_path / "raft.snapshot"
    in_place = path.read_bytes()
    writing, release = _hold_the_writer(monkeypatch)
    async with open_raft_store(config) as s:
        await until_leader(s)
        for i in range(50):
            await s.put(f"/t/{i}", b"x")
        first_index = s.status()["log_first_index"]
        await _until_writing(s, writing)
        s.replica._supersede_snapshot()  # what loading a snapshot from the leader does first
        release.set()
        await _until_written(s)
        assert path.read_bytes() == in_place
        assert not (tmp_path / "raft.snapshot.tmp").exists()
        assert s.status()["log_first_index"] == first_index  # not compacted to it


async def test_the_leaders_snapshot_is_not_replaced_by_one_being_written(tmp_path, monkeypatch):
    """pysyncobj renames the leader's snapshot into place with its last chunk and loads it
    after that: a writer finishing in between must not rename the follower's own older
    snapshot over it (the follower would load its own state, journal cleared to the leader's)."""
    ports = free_ports(2)
    leader = ReplicaConfig(
        self_address=f"127.0.0.1:{ports[0]}", peers=(), data_dir=str(tmp_path / "L")
    )
    await _snapshotted_store(leader)
    leaders = (tmp_path / "L" / "raft.snapshot").read_bytes()
    config = ReplicaConfig(
        self_address=f"127.0.0.1:{ports[1]}", peers=(), data_dir=str(tmp_path / "F")
    )
    writing, release = _hold_the_writer(monkeypatch)
    async with open_raft_store(config) as s:
        await until_leader(s)
        for i in range(50):
            await s.put(f"/t/{i}", b"follower's own")
        await _until_writing(s, writing)
        replica = s.replica
        with replica.tick_lock:  # as pysyncobj's tick thread receiving the last chunk
            assert replica._SyncObj__serializer.setTransmissionData((leaders, True, True))
            release.set()  # the writer finishes before the tick thread loads the file
            deadline = time.monotonic() + 10
            while not replica._snapshot_done and time.monotonic() < deadline:
                time.sleep(0.01)
            assert replica._snapshot_done
            replica._SyncObj__loadDumpFile(True)
            assert (tmp_path / "F" / "raft.snapshot").read_bytes() == leaders
            assert s.replica.kv.get("/t/0") is None  # the leader's state, not the follower's
            assert s.replica.kv.get("/s/0") is not None
        assert not (tmp_path / "F" / "raft.snapshot.tmp").exists()


async def test_the_log_is_not_compacted_before_the_snapshot_is_written(tmp_path, monkeypatch):
    config = _single_replica(tmp_path)
    writing, release = _hold_the_writer(monkeypatch)
    async with open_raft_store(config) as s:
        await until_leader(s)
        for i in range(100):
            await s.put(f"/s/{i}", b"in the snapshot")
        first_index = s.status()["log_first_index"]
        await _until_writing(s, writing)
        for i in range(100, 150):  # ticks go on while the writer is held
            await s.put(f"/s/{i}", b"after the snapshot")
        assert s.status()["log_first_index"] == first_index
        assert not (tmp_path / "raft.snapshot").exists()
        release.set()
        await _until_written(s)
        assert s.status()["log_first_index"] > first_index  # compacted once written
        for i in range(150, 170):
            await s.put(f"/s/{i}", b"journal only")
        digest = s.digest()
    await assert_reopens_with(config, digest)


async def test_the_writer_survives_a_failed_snapshot(tmp_path, monkeypatch):
    """An exception in the writer thread fails that snapshot only: the next one is written
    and the log compacted (a dead writer left the replica 'serializing' for good)."""
    config = _single_replica(tmp_path)
    real = _replica.Replica._write_snapshot
    calls = []

    def failing_once(self: Any, data: Any, path: str) -> bool:
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("injected writer failure")
        return real(self, data, path)

    monkeypatch.setattr(_replica.Replica, "_write_snapshot", failing_once)
    async with open_raft_store(config) as s:
        await until_leader(s)
        for i in range(100):
            await s.put(f"/s/{i}", b"v")
        first_index = s.status()["log_first_index"]
        s.replica.forceLogCompaction()
        with trio.fail_after(10):
            while not calls:
                await s.put("/t/tick", b"")
                await trio.sleep(0.02)
        await _until_written(s)
        assert len(calls) == 1 and s.status()["log_first_index"] == first_index
        s.replica.forceLogCompaction()
        with trio.fail_after(10):
            while s.status()["log_first_index"] == first_index:
                await s.put("/t/tick", b"")
                await trio.sleep(0.02)
        assert len(calls) == 2 and (tmp_path / "raft.snapshot").exists()


async def test_a_transfer_starts_over_from_a_new_snapshot(tmp_path):
    """A snapshot transfer to a lagging follower paused while a new snapshot was written goes
    on from the new file's start, not from the old file's handle (as pysyncobj did)."""
    config = _single_replica(tmp_path)
    await _snapshotted_store(config)
    async with open_raft_store(config) as s:
        await until_leader(s)
        serializer = s.replica._SyncObj__serializer
        with s.replica.tick_lock:
            chunk, first, last = serializer.getTransmissionData("follower")
        assert first and not last and chunk == (tmp_path / "raft.snapshot").read_bytes()
        old_first_index = s.status()["log_first_index"]
        for i in range(50):
            await s.put(f"/n/{i}", b"new")
        s.replica.forceLogCompaction()
        with trio.fail_after(10):
            while s.status()["log_first_index"] == old_first_index:
                await s.put("/t/tick", b"")
                await trio.sleep(0.02)
        with s.replica.tick_lock:
            chunk, first, last = serializer.getTransmissionData("follower")
        assert first and chunk == (tmp_path / "raft.snapshot").read_bytes()


def test_a_follower_needing_a_snapshot_is_not_flooded_while_one_is_written(tmp_path, monkeypatch):
    """A leader writing a snapshot has none to send to a follower that needs one: it must not
    send that follower empty snapshot messages in a loop (pysyncobj's loop did, for up to a
    heartbeat period per call: ~18,000 a second, the tick thread busy meanwhile)."""
    addrs = [f"127.0.0.1:{p}" for p in free_ports(3)]

    def make(i: int) -> _replica.Replica:
        peers = tuple(a for a in addrs if a != addrs[i])
        config = ReplicaConfig(
            self_address=addrs[i],
            peers=peers,
            data_dir=str(tmp_path / f"r{i}"),
            compaction_min_entries=50,
        )
        return _replica.Replica(config)

    def wait_for(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 15
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)

    def put(replica: _replica.Replica, key: str) -> None:
        done = threading.Event()
        replica.propose(encode_put(key, b"v" * 100), lambda result, error: done.set())
        assert done.wait(5)

    replicas = [make(i) for i in range(3)]
    try:
        for r in replicas:
            r.start()
        wait_for(lambda: any(r.is_raft_leader for r in replicas), "a leader")
        leader = next(r for r in replicas if r.is_raft_leader)
        lag = next(i for i, r in enumerate(replicas) if r is not leader)
        replicas[lag].stop()
        i = 0
        while leader._SyncObj__raftLog[0][1] < 100:  # compacted past the stopped follower
            put(leader, f"/k/{i}")
            i += 1
            assert i < 2000
        writing, release = threading.Event(), threading.Event()
        real = _replica._SnapshotCodec.GzipFile

        def held(*, fileobj: Any, mode: str = "rb") -> Any:
            if (
                mode.startswith("w")
                and leader.config.self_address in threading.current_thread().name
            ):
                writing.set()
                release.wait(20)
            return real(fileobj=fileobj, mode=mode)

        monkeypatch.setattr(_replica._SnapshotCodec, "GzipFile", staticmethod(held))
        leader.forceLogCompaction()
        while not writing.is_set():
            put(leader, "/tick")
            assert writing.wait(0.05) or i < 4000
            i += 1
        empty = []
        transport = leader._SyncObj__transport
        real_send = transport.send

        def counting(node: Any, message: Any) -> bool:
            if (
                isinstance(message, dict)
                and "serialized" in message
                and message["serialized"] is None
            ):
                empty.append(node)
            return real_send(node, message)

        transport.send = counting
        replicas[lag] = make(lag)
        replicas[lag].start()
        lagging = next(n for n in leader._SyncObj__otherNodes if n.address == addrs[lag])
        wait_for(lambda: lagging in leader._SyncObj__connectedNodes, "the follower reconnects")
        time.sleep(1.0)  # a heartbeat every 0.1 s
        sent = len(empty)
        assert leader.is_raft_leader
        release.set()
        wait_for(lambda: replicas[lag].kv.get("/k/0") is not None, "the follower gets the snapshot")
        assert 1 <= sent <= 100, sent
    finally:
        for r in replicas:
            r.stop()


def test_a_writer_outliving_stop_does_not_write_into_the_restarted_replicas_snapshot(
    tmp_path, monkeypatch
):
    """stop() waits for the snapshot writer only so long. A replica restarted on the same
    directory meanwhile must not share the .tmp file with the old writer (each would write
    into the other's file), and the old snapshot, dropped, must not land over a newer one."""
    config = _single_replica(tmp_path)
    writing, release = threading.Event(), threading.Event()
    real = _replica._SnapshotCodec.GzipFile

    def held_once(*, fileobj: Any, mode: str = "rb") -> Any:
        if mode.startswith("w") and not writing.is_set():
            writing.set()
            release.wait(20)
        return real(fileobj=fileobj, mode=mode)

    monkeypatch.setattr(_replica._SnapshotCodec, "GzipFile", staticmethod(held_once))

    def wait_for(condition: Any, what: str, seconds: float = 15) -> bool:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def put(replica: _replica.Replica, key: str, value: bytes) -> None:
        done = threading.Event()
        replica.propose(encode_put(key, value), lambda result, error: done.set())
        assert done.wait(5)

    old = _replica.Replica(config)
    old.start()
    assert wait_for(lambda: old.is_raft_leader, "a leader")
    for i in range(100):
        put(old, f"/old/{i}", b"x" * 200)
    old.forceLogCompaction()
    put(old, "/tick", b"")
    assert writing.wait(10)
    old.stop(timeout=0.2)  # the writer is still held
    assert old._snapshot_writer is not None and old._snapshot_writer.is_alive()

    new = _replica.Replica(config)
    new.start()
    try:
        assert wait_for(lambda: new.is_raft_leader, "a leader")
        for i in range(100):
            put(new, f"/new/{i}", b"y" * 300)
        new.forceLogCompaction()
        put(new, "/tick", b"")
        # The old code let the new writer finish here, into the old writer's .tmp file.
        wait_for(lambda: new._SyncObj__serializer._Serializer__pid == 0, "", seconds=2)
        release.set()
        old._snapshot_writer.join(10)
        assert not old._snapshot_ok  # dropped, not renamed
        assert wait_for(
            lambda: (
                new._SyncObj__serializer._Serializer__pid == 0 and new._SyncObj__raftLog[0][1] > 1
            ),
            "the new replica's snapshot written",
        )
        put(new, "/after", b"z")
        with new.state_lock:
            digest = new.kv.digest()
    finally:
        new.stop()
    again = _replica.Replica(config)
    again.start()
    try:
        assert wait_for(lambda: again.is_raft_leader and again.kv.get("/after"), "restarted")
        with again.state_lock:
            assert again.kv.digest() == digest  # the new replica's snapshot and journal
        assert not (tmp_path / "raft.snapshot.tmp").exists()
    finally:
        again.stop()


async def test_the_tick_thread_does_not_poll_while_a_snapshot_is_written(tmp_path, monkeypatch):
    """The writer wakes the tick thread when it is done, so an idle replica writing a snapshot
    sleeps until its next deadline, as it does otherwise (it polled every tick_s, 50 ms)."""
    config = _single_replica(
        tmp_path,
        heartbeat_s=0.5,
        raft_min_timeout=2.0,
        raft_max_timeout=3.0,
    )
    writing, release = _hold_the_writer(monkeypatch)
    ticks = []
    real_tick = _replica.Replica._onTick

    def counting(self: Any, timeToWait: float = 0.0) -> None:  # noqa: N803 - pysyncobj's name
        ticks.append(time.monotonic())
        real_tick(self, timeToWait)

    monkeypatch.setattr(_replica.Replica, "_onTick", counting)
    async with open_raft_store(config) as s:
        await until_leader(s)
        for i in range(50):
            await s.put(f"/s/{i}", b"v")
        first_index = s.status()["log_first_index"]
        await _until_writing(s, writing)
        await trio.sleep(0.1)
        before = len(ticks)
        await trio.sleep(1.0)  # idle: heartbeats every 0.5 s
        assert len(ticks) - before <= 6
        release.set()
        with trio.fail_after(10):  # woken by the writer, not by a poll or a write
            while s.status()["log_first_index"] == first_index:
                await trio.sleep(0.01)
