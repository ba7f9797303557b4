"""A list's later pages as of its first page's revision: the consistent snapshot a continue token promises.

Kubernetes over etcd reads every page of one list at the first page's revision (the continue token
carries it), so the pages of a list together show the objects as they were at that moment. The
store keeps one version per key, but its history keeps every change with the key's previous value,
which is enough to take the present back to revision R:

- a key not changed since R is as it is now;
- a key changed since R had, at R, the previous value of its first change after R (``prev_kv``):
  None (it did not exist: created after R, left out) or a value (put back if it was deleted since).

The watch cache (its per-resource history, :meth:`WatchCache.snapshot_at`) and the store (its watch
history, :func:`store_page`) both supply those changes; :class:`ChangedKeys` is what they share.
Nothing here runs for a list without a continue token.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from contextlib import aclosing
from operator import itemgetter
from typing import Any

import trio

from raftstore import Event, KeyValue

__all__ = ["ChangedKeys", "store_page"]

_KEY = itemgetter(0)
# Store events recorded between two yields to the event loop: a page whose revision is far back
# reads up to the store's whole history (100,000 events, ~50 ms of Python); ~2,000 take ~1 ms.
RECORD_SLICE = 2048


class ChangedKeys:
    """The keys under ``prefix`` after ``start_after`` changed since a revision, with their values then.

    Fed the events after that revision in revision order (:meth:`record`).
    """

    __slots__ = ("prefix", "start_after", "then", "existed", "_order", "_unordered")

    def __init__(self, prefix: str, start_after: str) -> None:
        self.prefix = prefix
        self.start_after = start_after
        #: key -> its value at the revision (None: it did not exist then)
        self.then: dict[str, KeyValue | None] = {}
        #: the keys of ``then`` that existed at the revision -> their values then
        self.existed: dict[str, KeyValue] = {}
        # The keys of ``existed`` in order, sorted when merged: a sorted container's insert per
        # key cost 60 % of a page after 15,000 changes (timsort of a sorted run plus the keys
        # added since is cheaper).
        self._order: list[str] = []
        self._unordered = False

    def record(self, events: Iterable[Event]) -> None:
        then = self.then
        prefix, start_after = self.prefix, self.start_after
        for ev in events:
            key = ev.kv.key
            # only the first change after the revision tells the value then
            if key in then or key <= start_after or not key.startswith(prefix):
                continue
            then[key] = ev.prev_kv
            if ev.prev_kv is not None:
                self.existed[key] = ev.prev_kv
                self._order.append(key)
                self._unordered = True

    def merged(self, current: Iterable[KeyValue], after: str, upto: str | None) -> Iterator[KeyValue]:
        """The key-values at the revision of the keys in (``after``, ``upto``] (None: no bound), in
        key order. ``current`` are the present key-values in that interval, in key order, read at a
        revision no newer than the last event recorded (so every key changed since is in ``then``)."""
        then, existed, order = self.then, self.existed, self._order
        if self._unordered:
            order.sort()
            self._unordered = False
        lo = bisect_right(order, after)
        hi = len(order) if upto is None else bisect_right(order, upto)
        old = ((k, existed[k]) for k in order[lo:hi])
        now = ((kv.key, kv) for kv in current if kv.key not in then)
        # (the two streams never share a key, so the KeyValues themselves are never compared)
        for _, kv in heapq.merge(now, old, key=_KEY):
            yield kv


async def store_page(
    store: Any,
    prefix: str,
    start_after: str,
    revision: int,
    *,
    want: int,
    chunk: int,
    accept: Callable[[KeyValue], bool],
) -> list[KeyValue]:
    """Up to ``want`` (0: all) accepted key-values under ``prefix`` after ``start_after``, in key
    order, as they were at ``revision`` (which the local replica must have applied).

    Reads the present in ranges of ``chunk`` keys (0: one range) and the store's watch history from
    ``revision + 1`` up to each range's revision. Raises :class:`raftstore.Compacted` if the history
    no longer reaches back to ``revision``.
    """
    changed = ChangedKeys(prefix, start_after)
    covered = revision  # ``changed`` holds every change up to here
    out: list[KeyValue] = []
    done = start_after  # keys up to here have been listed
    # Every revision is an event under some key, so a watch of all keys ("") from revision + 1
    # yields at once whenever the store is past ``revision``; a watch of ``prefix`` alone would
    # wait forever when nothing under it changed.
    async with aclosing(store.watch("", revision + 1)) as history:
        while True:
            rr = await store.range(prefix, limit=chunk, start_after=done, linearizable=False)
            while covered < rr.revision:
                batch = await anext(history)
                for i in range(0, len(batch), RECORD_SLICE):
                    if i:
                        await trio.lowlevel.checkpoint()
                    changed.record(batch[i:i + RECORD_SLICE])
                covered = batch[-1].revision
            upto = rr.kvs[-1].key if rr.more and rr.kvs else None
            for kv in changed.merged(rr.kvs, done, upto):
                if accept(kv):
                    out.append(kv)
                    if want and len(out) >= want:
                        return out
            if upto is None:
                return out
            done = upto
