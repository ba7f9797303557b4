"""Process-spawning harness for the multi-process raftstore tests.

The replica processes and their client live in the package (``raftstore._localcluster``,
``raftstore._wire``) because the demo and the benchmark drive them too; this module adds what
only tests need: a write load that records exactly which writes were acknowledged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from raftstore import RaftStore, ReplicaConfig, StoreError, open_raft_store
from raftstore._localcluster import LocalCluster, LocalReplica, free_ports, running_cluster

__all__ = [
    "SECRET",
    "LocalCluster",
    "LocalReplica",
    "WriteLoad",
    "assert_reopens_with",
    "open_replicas",
    "running_cluster",
    "until",
    "until_leader",
]

# The cluster secret of in-process test replicas (Raft frames are encrypted with it).
SECRET = b"test-secret-0123456789abcdef"


async def until(condition: Any, timeout: float) -> float:
    """Wait (polling, with a deadline) until condition() holds; the time it took."""
    t0 = trio.current_time()
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.005)
    return trio.current_time() - t0


async def until_leader(store: RaftStore, timeout: float = 10.0) -> None:
    """Wait (polling, with a deadline) until a single-replica store has elected itself."""
    with trio.fail_after(timeout):
        while not store.is_leader():
            await trio.sleep(0.01)


async def assert_reopens_with(config: ReplicaConfig, digest: str) -> None:
    """The replica of ``config``, opened again, leads and holds exactly ``digest``."""
    async with open_raft_store(config) as s:
        await until_leader(s)
        await s.barrier()
        assert s.digest() == digest


async def open_replicas(
    tmp_path: Any, count: int, *, host: str = "127.0.0.1", ports: tuple[int, int] | None = None,
    **config: Any,
) -> list[RaftStore]:
    """``count`` replicas of one cluster in this process, on ``host`` at free ports (from the
    range ``ports`` if given), each with a data directory under ``tmp_path`` named by its port;
    ``config``: further ReplicaConfig fields for all of them."""
    addresses = [f"{host}:{p}" for p in (free_ports(count, ports) if ports else free_ports(count))]
    stores = []
    for address in addresses:
        stores.append(await RaftStore.open(ReplicaConfig(
            self_address=address,
            peers=tuple(a for a in addresses if a != address),
            data_dir=str(tmp_path / address.rsplit(":", 1)[1]),
            secret=SECRET,
            **config,
        )))
    return stores


@dataclass
class WriteLoad:
    """Writers putting unique keys through the given replicas (round-robin on failure).

    ``acked`` maps each acknowledged key to its value; ``unknown`` holds keys whose put failed
    with a possibly-applied outcome. A key is written once, so "acknowledged and lost" is
    exactly "in acked but absent (or different) after the test".
    """

    targets: Sequence[LocalReplica]
    writers: int = 8
    prefix: str = "/load/"
    # Requests each writer keeps outstanding (1 = sequential; more = pipelined load).
    pipeline: int = 1
    acked: dict[str, bytes] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    failed: int = 0
    _stop: trio.Event = field(default_factory=trio.Event)

    async def _writer(self, wid: int) -> None:
        seq = 0
        target = wid % len(self.targets)
        while not self._stop.is_set():
            replica = self.targets[target]
            if not replica.running or replica.paused:
                target = (target + 1) % len(self.targets)
                await trio.sleep(0.01)
                continue
            try:
                async with replica.client() as client:
                    while self.pipeline > 1 and not self._stop.is_set():
                        keys = [f"{self.prefix}{wid}/{seq + i}" for i in range(self.pipeline)]
                        seq += self.pipeline
                        answers = await client.pipeline(
                            [["put", k, k.encode()] for k in keys], window=self.pipeline, timeout=10
                        )
                        lost = False
                        for k, (_, _, status, payload) in zip(keys, answers, strict=True):
                            if status == 0:
                                self.acked[k] = k.encode()
                            elif status == 1 and not payload[2]:
                                self.failed += 1
                            else:
                                self.unknown.add(k)
                                lost = True
                        if lost:
                            raise StoreError("pipeline interrupted")
                    while not self._stop.is_set():
                        key = f"{self.prefix}{wid}/{seq}"
                        value = f"v{wid}.{seq}".encode()
                        seq += 1
                        try:
                            await client.call("put", key, value, timeout=10)
                        except StoreError as exc:
                            if getattr(exc, "maybe_committed", False):
                                self.unknown.add(key)
                            else:
                                self.failed += 1
                            raise
                        self.acked[key] = value
            except (StoreError, OSError, trio.TooSlowError):
                target = (target + 1) % len(self.targets)
                await trio.sleep(0.02)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for wid in range(self.writers):
                nursery.start_soon(self._writer, wid)
            task_status.started()

    def stop(self) -> None:
        self._stop.set()

    async def wait_acked(self, count: int, timeout: float = 30.0) -> None:
        with trio.fail_after(timeout):
            while len(self.acked) < count:
                await trio.sleep(0.01)


async def assert_all_acked_present(replica: LocalReplica, load: WriteLoad) -> None:
    """Every acknowledged write is on ``replica`` (read linearizably, one range)."""
    async with replica.client() as client:
        kvs, more, _ = await client.call("range", load.prefix, 0, True, timeout=20)
    assert not more
    present = {kv[0]: kv[1] for kv in kvs}
    lost = [k for k, v in load.acked.items() if present.get(k) != v]
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    # Anything present was either acknowledged or in doubt: nothing appears from nowhere.
    stray = set(present) - set(load.acked) - load.unknown
    assert not stray, f"writes present that were never attempted: {sorted(stray)[:5]}"
