"""Linearizability of a real 3-replica cluster while its leader is SIGKILLed.

Clients on every replica run writes, value-CAS and (linearizable) reads on a few keys and
record call/return times; the leader is killed mid-run. The history is checked with the
Wing & Gong / Lowe checker in tests/linearizability.py; an operation whose outcome is unknown
(timeout, lost connection, "maybe committed") counts as possibly happened.
"""

from __future__ import annotations

import random
import time

import pytest
import trio
from helpers import running_cluster
from linearizability import UNKNOWN, check_history

from raftstore import StoreError

pytestmark = pytest.mark.slow

KEYS = ["/lin/a", "/lin/b", "/lin/c"]
CLIENTS_PER_REPLICA = 3
OPS_PER_CLIENT = 100
last_seen: dict[str, bytes | None] = {}


async def _client(cid: int, replica, history: list, rng: random.Random) -> None:
    done = 0
    while done < OPS_PER_CLIENT:
        if not replica.running:
            return
        try:
            async with replica.client() as client:
                while done < OPS_PER_CLIENT:
                    key = rng.choice(KEYS)
                    kind = rng.choice(["write", "read", "read", "cas"])
                    value = f"{cid}.{done}".encode()
                    # Mostly the value last seen on the key, so many CAS succeed and race.
                    expected = last_seen.get(key) if rng.random() < 0.8 else None
                    args = {"write": (key, value), "read": (key,), "cas": (key, expected, value)}[
                        kind
                    ]
                    done += 1
                    call = time.monotonic()
                    try:
                        if kind == "write":
                            await client.call("put", key, value, timeout=4)
                            result = None
                        elif kind == "read":
                            kv = await client.call("get", key, True, timeout=4)
                            result = kv[1] if kv else None
                            last_seen[key] = result
                        else:
                            result, _ = await client.call(
                                "cas_value", key, expected, value, timeout=4
                            )
                            if result:
                                last_seen[key] = value
                    except StoreError as exc:
                        # Certainly-not-applied writes and failed reads are no operation at all;
                        # a write that may have applied stays in the history as unknown.
                        if kind != "read" and getattr(exc, "maybe_committed", False):
                            history.append((cid, kind, args, call, time.monotonic(), UNKNOWN))
                        raise  # reconnect: the connection may be gone with its replica
                    history.append((cid, kind, args, call, time.monotonic(), result))
        except (StoreError, OSError):
            await trio.sleep(0.05)


async def test_history_with_leader_kill_is_linearizable(tmp_path):
    rng = random.Random(20261126)
    last_seen.clear()
    history: list = []
    async with running_cluster(tmp_path, 3) as cluster:
        leader = await cluster.wait_leader()

        async def kill_leader_midway() -> None:
            while len(history) < CLIENTS_PER_REPLICA * 3 * OPS_PER_CLIENT // 3:
                await trio.sleep(0.01)
            await leader.kill()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_leader_midway)
            cid = 0
            for replica in cluster.replicas:
                for _ in range(CLIENTS_PER_REPLICA):
                    nursery.start_soon(_client, cid, replica, history, random.Random(rng.random()))
                    cid += 1
    known = [h for h in history if h[5] is not UNKNOWN]
    assert len(known) > CLIENTS_PER_REPLICA * 2 * OPS_PER_CLIENT // 2, (
        "too few operations completed"
    )
    ok, info = check_history(history)
    cas_won = sum(1 for h in history if h[1] == "cas" and h[5] is True)
    assert cas_won >= 20, f"only {cas_won} CAS succeeded: the history exercises too little"
    assert ok, info
