"""ReadIndex: a follower's linearizable reads cost a round trip to the leader, not log entries,
and still see every write acknowledged before them (real replica processes)."""

from __future__ import annotations

import pytest
from helpers import running_cluster

pytestmark = pytest.mark.slow


async def test_follower_reads_see_the_latest_write_without_log_entries(tmp_path):
    async with running_cluster(tmp_path, 3) as cluster:
        leader = await cluster.wait_leader()
        follower = await cluster.follower()
        async with leader.client() as writer, follower.client() as reader:
            await writer.call("put", "/ri/warm", b"0")
            before = (await leader.call("status"))["commit_index"]
            for i in range(50):
                await writer.call("put", "/ri/k", str(i).encode())
                # acknowledged by the leader: the follower's linearizable read must see it
                kv = await reader.call("get", "/ri/k", True)
                assert kv is not None and kv[1] == str(i).encode()
            after_writes = (await leader.call("status"))["commit_index"]
            for _ in range(50):
                kv = await reader.call("get", "/ri/k", True)
                assert kv[1] == b"49"
            # the 50 writes are 50 entries; the 100 reads added none (no read barrier entries)
            assert after_writes - before == 50
            assert (await leader.call("status"))["commit_index"] == after_writes
