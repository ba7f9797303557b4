"""Short garbage-collector pauses in a replica's process (a master, ``python -m raftstore``).

A master holds millions of small long-lived objects (the replicated state and its history,
informer caches, decoded objects). CPython's full (generation 2) collection walks all of them
while holding the GIL: with 10,000 pods that is about a second on this hardware, during which
the Raft tick thread cannot send heartbeats, so the followers elect a new leader (leadership
flapped under load). Even its young collections stall the event loop for long: CPython starts
one when allocations minus deallocations of tracked objects pass ``GEN0_THRESHOLD``, but a
master mostly *replaces* objects (a new version of a pod in the state, its history, the watch
cache, an informer; the old one freed), so that net count grows slowly while the young list
grows to many times the threshold, and each collection walks all of it (and the middle
collections walk three of those). Policy:

* Every ``freeze_interval`` (0.5 s), everything alive is moved out of the collector's way
  (``gc.freeze``, O(1)), so no collection ever has more than half a second of allocations to
  walk. A follower freezes without collecting: at 1,000 nodes / 30,000 pods its young and
  middle collections held its event loop for 1.7-2.1 s per run (longest 150-280 ms), and it
  makes next to no cyclic garbage (see below). The leader first
  collects the young generation (what was allocated since its last tick and is still alive:
  a few thousand objects, a few ms), which reclaims the cycles that died young, since it
  never reclaims frozen ones.
* Frozen objects are never examined again, so reference cycles among them that become garbage
  later are not reclaimed. A master that is *not* the leader reclaims them: every
  ``full_interval`` it unfreezes, collects everything and freezes again. That pause is
  harmless on a follower (PreVote: a follower's pause starts no election). A leader never
  does (a pause that long would lose its lease): it keeps such cycles until it is a follower
  again. They are rare (API objects are acyclic dicts): at 400 nodes / 12,000 pods, full
  collections every 20 s during the run found none on any master, once the API server freed
  its closed TLS connections itself (trio's SSLStream refers to itself: 430-500 objects per
  20 s on the leader before).
* Collections slower than ``SLOW_PAUSE_S`` are logged.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["install_gc_policy", "serve_gc_policy"]

log = logging.getLogger("raftstore.gc")

# Net allocations before an automatic young collection (default 700): between two policy ticks
# it is seldom reached, and then the young list holds about one tick's allocations.
GEN0_THRESHOLD = 20_000
# Young collections per middle one, and middle ones per full one (CPython's defaults are 10
# and 10): with everything frozen every tick, the collector's own middle and full
# collections only ever find a tick's survivors.
GEN1_THRESHOLD = 3
GEN2_THRESHOLD = 30
# How often everything alive is frozen (the leader collects its young generation first): the
# most any collection walks is this much allocation (a few ms of CPU).
FREEZE_INTERVAL_S = 0.5
# How often a follower reclaims cycles among frozen objects (a full collection: 120-470 ms at
# 12,000 pods on a loaded machine, more at larger sizes).
FULL_INTERVAL_S = 600.0
# A collection this long on a leader risks missed heartbeats: worth a log line.
SLOW_PAUSE_S = 0.2

_started: list[float] = []


def _timer(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[:] = [time.perf_counter()]
        return
    if not _started:
        return
    took = time.perf_counter() - _started[0]
    if took >= SLOW_PAUSE_S:
        log.warning("garbage collection of generation %s took %.0f ms (%s objects collected)",
                    info.get("generation"), took * 1e3, info.get("collected"))


def install_gc_policy() -> None:
    """Thresholds and the slow-collection log (process-wide; for replica processes)."""
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    if _timer not in gc.callbacks:
        gc.callbacks.append(_timer)


def freeze_all(*, collect_young: bool) -> int:
    """Freeze everything alive, after a collection of the young generation if asked; returns
    the number of objects collected."""
    collected = gc.collect(0) if collect_young else 0
    gc.freeze()
    return collected


def reclaim_frozen() -> int:
    """Unfreeze, collect everything, freeze again; returns the number of objects collected."""
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    return collected


async def serve_gc_policy(
    is_leader: Callable[[], bool],
    *,
    freeze_interval: float = FREEZE_INTERVAL_S,
    full_interval: float = FULL_INTERVAL_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Apply the policy until cancelled (see the module docstring)."""
    install_gc_policy()
    freeze_all(collect_young=True)
    last_full = trio.current_time()
    task_status.started()
    while True:
        await trio.sleep(freeze_interval)
        leader = is_leader()
        if not leader and trio.current_time() - last_full >= full_interval:
            started = time.perf_counter()
            collected = reclaim_frozen()
            last_full = trio.current_time()
            log.info("full collection as a follower: %d objects reclaimed in %.0f ms",
                     collected, (time.perf_counter() - started) * 1e3)
        else:
            freeze_all(collect_young=leader)
