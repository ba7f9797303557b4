"""Short garbage-collector pauses in a replica's process (a master, ``python -m raftstore``).

A master holds millions of small long-lived objects (the replicated state and its history,
informer caches, decoded objects). CPython's full (generation 2) collection walks all of them
while holding the GIL: with 10,000 pods that is about a second on this hardware, during which
the Raft tick thread cannot send heartbeats, so the followers elect a new leader (leadership
flapped under load). Policy:

* Survivors are moved out of the collector's way (``gc.freeze``) every ``freeze_interval``, after
  a young-generation collection has removed the short-lived garbage; automatic full collections
  then walk only what was allocated since, which stays small. Only the collector's own middle
  and full collections move objects into the oldest generation, so a freeze is due only after
  one of them ran, and then a young collection (<= ``GEN0_THRESHOLD`` objects, a few ms) is all
  it needs: a middle collection before every freeze (up to ~80k objects, 50-75 ms of CPU every
  10 s) held the API's event loop on every master, the followers' included. Cycles among the
  young survivors since that collection are frozen with them (reclaimed like the next point's).
* Frozen objects are never examined, so reference cycles among them that later become garbage
  are not reclaimed. A master that is *not* the leader reclaims them: every
  ``full_interval`` it unfreezes, collects everything and freezes again. That pause is
  harmless on a follower (PreVote: a follower's pause starts no election). A master that stays
  leader for a long time keeps such cycles until it is a follower again (they are rare:
  API objects are acyclic dicts).
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

# Allocations between young collections (default 700): fewer, still short (<= ~20k objects).
GEN0_THRESHOLD = 20_000
# Young collections per middle one, and middle ones per full one: bounds the middle generation
# at ~60k objects. At ~200k (10 young per middle) a middle collection took 300-440 ms on a
# loaded 2-core machine during a 6,000-pod burst and the leader lost its lease; full
# collections stay as frequent as before (every 90 young ones).
GEN1_THRESHOLD = 3
GEN2_THRESHOLD = 30
# How often survivors are frozen: a full collection walks at most this much recent growth.
FREEZE_INTERVAL_S = 10.0
# How often a follower reclaims cycles among frozen objects (a pause of up to ~1 s there).
FULL_INTERVAL_S = 600.0
# A collection this long on a leader risks missed heartbeats: worth a log line.
SLOW_PAUSE_S = 0.2

_started: list[float] = []
# Whether a middle or full collection moved survivors into the oldest generation since the last
# freeze (at start: everything allocated so far is old).
_promoted = [True]


def _timer(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation", 0) >= 1:
        _promoted[0] = True
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


def freeze_survivors() -> bool:
    """If a middle or full collection promoted survivors since the last freeze: collect the
    young generation, then freeze everything still alive. Whether it froze."""
    if not _promoted[0]:
        return False  # the oldest generation did not grow: nothing a full collection would walk
    _promoted[0] = False
    gc.collect(0)
    gc.freeze()
    return True


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
    last_full = trio.current_time()
    task_status.started()
    while True:
        await trio.sleep(freeze_interval)
        if not is_leader() and trio.current_time() - last_full >= full_interval:
            started = time.perf_counter()
            collected = reclaim_frozen()
            last_full = trio.current_time()
            log.info("full collection as a follower: %d objects reclaimed in %.0f ms",
                     collected, (time.perf_counter() - started) * 1e3)
        else:
            freeze_survivors()
