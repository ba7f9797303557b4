"""Replicas of one cluster write their snapshots at different log indices, run after run: two
writers at once (each a thread pickling the whole state) starve a small host, and the API's
slowest calls gathered where they met."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
from helpers import open_replicas

from raftstore import _replica

pytestmark = pytest.mark.slow

EVERY = 60  # compaction_min_entries: a snapshot every 60 entries (each put below is one)


async def test_replicas_never_snapshot_at_the_same_index(tmp_path, monkeypatch):
    starts: dict[str, list[int]] = {}
    real = _replica.Replica._take_snapshot

    def recording(self: Any, data: Any, idx: int) -> None:
        if self._snapshot_idx is None:
            starts.setdefault(self.config.self_address, []).append(idx)
        real(self, data, idx)

    monkeypatch.setattr(_replica.Replica, "_take_snapshot", recording)
    stores = []
    try:
        stores = await open_replicas(
            tmp_path, 3, host="127.0.64.1", ports=(24000, 24500), compaction_min_entries=EVERY
        )
        addresses = [s.config.self_address for s in stores]
        with trio.fail_after(15):
            while not any(s.is_leader() for s in stores):
                await trio.sleep(0.01)
        leader = next(s for s in stores if s.is_leader())
        for i in range(EVERY * 9):  # one at a time: one log entry each
            await leader.put(f"/s/{i % 50}", b"%d" % i)
        with trio.fail_after(10):
            while any(len(starts.get(a, [])) < 6 for a in addresses):
                await leader.put("/s/tick", b"")
                await trio.sleep(0.01)
    finally:
        for store in stores:
            await store.aclose()
    # Phases a third of the interval apart; with thresholds staggered for good (EVERY,
    # EVERY * 4/3, EVERY * 5/3 entries) the first two met after four intervals.
    for a in addresses:
        for b in addresses:
            if a < b:
                closest = min(abs(x - y) for x in starts[a] for y in starts[b])
                assert closest >= EVERY // 6, (starts[a], starts[b])
    for address in addresses:  # each about every EVERY entries, at its own phase
        mine = starts[address]
        gaps = [b - a for a, b in itertools.pairwise(mine)]
        assert all(EVERY // 2 <= g <= 2 * EVERY for g in gaps), (address, mine)
