"""PreVote: a replica that was cut off (or starved) for several election timeouts rejoins
without deposing the healthy leader (real replica processes; the cut is an nftables rule)."""

from __future__ import annotations

import shutil

import pytest
import trio
from conftest_cluster import cut_off
from helpers import running_cluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft (apt-get install nftables)"),
]


async def test_a_follower_back_from_a_partition_does_not_depose_the_leader(tmp_path):
    async with running_cluster(tmp_path, 3) as cluster:
        # pysyncobj connects from the higher address to the lower one: the replica with the
        # lowest address only accepts connections, so dropping its port cuts it off entirely.
        low = min(cluster.replicas, key=lambda r: r.address)
        leader = await cluster.wait_leader()
        if leader is low:
            low.pause()  # hand leadership to another replica first
            leader = await cluster.wait_leader(among=[r for r in cluster.replicas if r is not low])
            low.resume()
        await leader.call("put", "/prevote/before", b"1")
        term = (await leader.call("status"))["term"]
        # The put committed on a majority, which need not include `low` yet (just started):
        # wait until it follows this leader, or "its term did not rise" would compare nothing.
        with trio.fail_after(20):
            while (await low.call("get", "/prevote/before", False)) is None:
                await trio.sleep(0.05)
        assert (await low.call("status"))["term"] == term
        with cut_off(int(low.address.rsplit(":", 1)[1])):
            # Several election timeouts (0.4-0.8 s) cut off, while the others keep committing.
            for i in range(25):
                await leader.call("put", f"/prevote/{i}", b"x")
                await trio.sleep(0.1)
            assert (await low.call("status"))["term"] == term, "a cut-off replica raised its term"
        # It catches up with the same leader, in the same term.
        with trio.fail_after(20):
            while True:
                status = await low.call("status")
                if status["revision"] == (await leader.call("status"))["revision"]:
                    break
                await trio.sleep(0.05)
        assert (await cluster.wait_leader()) is leader
        after = await leader.call("status")
        assert after["term"] == term and after["is_leader"]
        kv = await low.call("get", "/prevote/24", True)
        assert kv is not None and kv[1] == b"x"
