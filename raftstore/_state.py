"""KVState: the deterministic, versioned key-value state machine that Raft replicates.

Rules (the same as etcd's MVCC store, minus multi-version reads):

- One global ``revision``, 1 for the empty store, +1 per applied command that changes something.
  A txn is one revision however many keys it writes; a delete of an absent key, a txn that
  writes nothing, a ``get`` or a ``noop`` do not advance it. A put always does, even with an
  unchanged value (etcd semantics; the API server skips no-op updates itself).
- Every change is recorded as :class:`Event` in a bounded history. When the history holds more
  than ``history_limit`` events, the oldest *revisions* are dropped whole, and
  ``compact_revision`` becomes the newest dropped revision: every event with a revision above it
  is retained, so a watch resumed from ``compact_revision + 1`` misses nothing.
- ``apply`` is pure: no clocks, randomness or I/O, so every replica that applies the same log
  holds the same keys, revisions and events (checked with :meth:`KVState.digest`).

The object is plain data so that pysyncobj can pickle it for snapshots; ``__getstate__``
flattens it to columns (see there), which pickles several times faster than the dataclasses.
"""

from __future__ import annotations

import copyreg
import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from itertools import islice
from operator import attrgetter
from typing import Any

import msgpack
from sortedcontainers import SortedList

from ._commands import decode_command, validate_command
from ._types import Compacted, Event, InvalidCommand, KeyValue, RangeResult, TxnResult

__all__ = ["KVState", "StateView"]

# etcd keeps 5 minutes of history by default; 100k events cover minutes of a busy cluster
# while bounding memory to a few tens of MB of small objects.
DEFAULT_HISTORY_LIMIT = 100_000
# Dropped events are only marked (an offset) and physically removed in chunks at least this
# large, so trimming costs O(1) amortized per event instead of a list shift per write.
_MIN_TRIM_CHUNK = 1024
# Version of the pickled layout, so a future change can still read older snapshots. 1: a
# tuple per key and two per event (still read); 2: columns (see KVState.__getstate__).
_STATE_FORMAT = 2

_event_revision = attrgetter("revision")
_event_type = attrgetter("type")
_event_kv = attrgetter("kv")
_event_prev_kv = attrgetter("prev_kv")
_kv_key = attrgetter("key")
_kv_value = attrgetter("value")
_kv_create_revision = attrgetter("create_revision")
_kv_mod_revision = attrgetter("mod_revision")
_kv_version = attrgetter("version")
_packb = msgpack.packb


# Items per C-level pass over a column (map, zip) when pickling a state: one pass over a 170,000-row
# table holds the GIL for 5-15 ms; a slice of this many ~0.5 ms, and the view's ``pause`` (the
# snapshot writer thread hands the GIL over there) runs between slices.
_COLUMN_SLICE = 8192


class StateView:
    """A KVState frozen at one revision (see :meth:`KVState.frozen_view`); pickles as that
    KVState, in columns (format 2)."""

    __slots__ = ("compact_revision", "events", "history_limit", "live", "pause", "revision")

    def __init__(
        self,
        history_limit: int,
        revision: int,
        compact_revision: int,
        live: list[KeyValue],
        events: list[Event],
    ) -> None:
        self.history_limit = history_limit
        self.revision = revision
        self.compact_revision = compact_revision
        self.live = live
        self.events = events
        # Called between slices of work while pickling (see _COLUMN_SLICE), if set.
        self.pause: Callable[[], None] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Unpickled as copyreg does for protocol 0/1 objects: KVState.__new__, then
        # KVState.__setstate__(columns).
        rebuild = copyreg._reconstructor  # type: ignore[attr-defined]
        return (rebuild, (KVState, object, None), self.columns())

    def columns(self) -> dict[str, Any]:
        """Columns instead of a tuple per key and event, built with C-level passes (map, zip,
        dict) and no Python code per key or event: at 30,000 pods with 100,000 events of
        history the tuples of format 1 cost more than the pickling itself. Every distinct
        KeyValue (the live ones first, then those only the history holds) is one row of the
        version table, and an event names its ``kv`` and ``prev_kv`` by row (0 is None), so a
        value shared by the live key and its events (the same object) is written once and
        shared again after loading."""
        live, events, pause = self.live, self.events, self.pause

        def sliced_map(fn: Any, items: list[Any]) -> list[Any]:
            out: list[Any] = []
            for start in range(0, len(items), _COLUMN_SLICE):
                out += map(fn, items[start : start + _COLUMN_SLICE])
                if pause is not None:
                    pause()
            return out

        ev_kv = sliced_map(_event_kv, events)
        ev_prev = sliced_map(_event_prev_kv, events)
        # Distinct objects by identity, in first-seen order: None, the live kvs, history's.
        rows: dict[int, KeyValue | None] = {id(None): None}
        for objs in (live, ev_kv, ev_prev):
            for start in range(0, len(objs), _COLUMN_SLICE):
                part = objs[start : start + _COLUMN_SLICE]
                rows.update(zip(map(id, part), part, strict=True))
                if pause is not None:
                    pause()
        ids = list(rows)
        row_index: dict[int, int] = {}
        for start in range(0, len(ids), _COLUMN_SLICE):
            part = ids[start : start + _COLUMN_SLICE]
            row_index.update(zip(part, range(start, start + len(part)), strict=True))
            if pause is not None:
                pause()
        row_of = row_index.__getitem__
        table = list(rows.values())
        del table[0]
        return {
            "format": _STATE_FORMAT,
            "history_limit": self.history_limit,
            "revision": self.revision,
            "compact_revision": self.compact_revision,
            "live": len(live),
            "keys": sliced_map(_kv_key, table),
            "values": sliced_map(_kv_value, table),
            "create_revisions": sliced_map(_kv_create_revision, table),
            "mod_revisions": sliced_map(_kv_mod_revision, table),
            "versions": sliced_map(_kv_version, table),
            "event_types": sliced_map(_event_type, events),
            "event_revisions": sliced_map(_event_revision, events),
            "event_kvs": sliced_map(row_of, sliced_map(id, ev_kv)),
            "event_prev_kvs": sliced_map(row_of, sliced_map(id, ev_prev)),
        }


class KVState:
    """The replicated state machine. See the module docstring for the revision rules.

    Not thread-safe: the owner serializes ``apply`` with reads (one lock, or one thread). Results
    and events are immutable objects shared with the state, so they may be handed to other
    threads once returned.
    """

    def __init__(self, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        if type(history_limit) is not int or history_limit < 1:
            raise ValueError(f"history_limit must be a positive int, got {history_limit!r}")
        self.history_limit = history_limit
        self.revision = 1
        self.compact_revision = 0
        self._kvs: dict[str, KeyValue] = {}
        self._keys: SortedList = SortedList()
        # Events in revision order; those before _hist_start are dropped (awaiting a chunked del).
        self._events: list[Event] = []
        self._hist_start = 0

    # --- applying commands ----------------------------------------------------------------------

    def apply(self, command: bytes) -> Any:
        """Apply one encoded command (see ``raftstore._commands``) and return its result.

        put/del -> ``(revision, prev KeyValue | None)``; txn -> :class:`TxnResult`;
        noop -> current revision; batch -> a list with one result per item, where an item that
        is malformed gets an :class:`InvalidCommand` instance as its result (and changes nothing)
        while the others apply. A malformed command raises :class:`InvalidCommand` and changes
        nothing; since the check is deterministic, every replica rejects it the same way.
        """
        cmd = decode_command(command)
        kind = cmd[0]
        if kind == "put":
            return self._put(cmd[1], cmd[2])
        if kind == "batch":
            return self._batch(cmd[1])
        return self._apply_checked(cmd)

    def _apply_checked(self, cmd: list[Any]) -> Any:
        kind = cmd[0]
        if kind == "put":
            return self._put(cmd[1], cmd[2])
        if kind == "del":
            return self._delete(cmd[1])
        if kind == "txn":
            return self._txn(cmd[1], cmd[2], cmd[3])
        if kind == "noop":
            return self.revision
        raise InvalidCommand(f"cannot apply {kind!r} here")  # pragma: no cover - validated before

    def _batch(self, items: list[Any]) -> list[Any]:
        results: list[Any] = []
        for item in items:
            try:
                validate_command(item, allow_batch=False)
            except InvalidCommand as exc:
                results.append(exc)
                continue
            results.append(self._apply_checked(item))
        return results

    def _put(self, key: str, value: bytes) -> tuple[int, KeyValue | None]:
        rev = self.revision + 1
        prev = self._kvs.get(key)
        if prev is None:
            kv = KeyValue(key, value, rev, rev, 1)
            self._keys.add(key)
        else:
            kv = KeyValue(key, value, prev.create_revision, rev, prev.version + 1)
        self._kvs[key] = kv
        # Event before revision: a reader on another thread that reads `revision` first then
        # finds every event up to it (the caller still serializes apply with reads; see class doc).
        self._events.append(Event("PUT", kv, prev, rev))
        self.revision = rev
        self._bound_history()
        return rev, prev

    def _delete(self, key: str) -> tuple[int, KeyValue | None]:
        prev = self._kvs.pop(key, None)
        if prev is None:
            return self.revision, None
        rev = self.revision + 1
        self._keys.remove(key)
        self._events.append(Event("DELETE", KeyValue(key, b"", 0, rev, 0), prev, rev))
        self.revision = rev
        self._bound_history()
        return rev, prev

    def _compare(self, c: list[Any]) -> bool:
        key, target, op, want = c
        kv = self._kvs.get(key)
        if target == "exists":
            have: Any = kv is not None
        elif target == "value":
            if kv is None:
                return False  # no value to compare (as etcd)
            have = kv.value
        elif kv is None:
            have = 0
        elif target == "mod_revision":
            have = kv.mod_revision
        elif target == "version":
            have = kv.version
        else:
            have = kv.create_revision
        if op == "==":
            return bool(have == want)
        if op == "!=":
            return bool(have != want)
        if op == "<":
            return bool(have < want)
        return bool(have > want)

    def _txn(self, compares: list[Any], success: list[Any], failure: list[Any]) -> TxnResult:
        succeeded = all(self._compare(c) for c in compares)
        rev = self.revision + 1
        kvs = self._kvs
        events = self._events
        n_events = len(events)
        results: list[Any] = []
        for op in success if succeeded else failure:
            kind = op[0]
            key = op[1]
            if kind == "get":
                results.append(kvs.get(key))
            elif kind == "put":
                prev = kvs.get(key)
                if prev is None:
                    kv = KeyValue(key, op[2], rev, rev, 1)
                    self._keys.add(key)
                else:
                    kv = KeyValue(key, op[2], prev.create_revision, rev, prev.version + 1)
                kvs[key] = kv
                events.append(Event("PUT", kv, prev, rev))
                results.append(prev)
            elif kind == "del":
                prev = kvs.pop(key, None)
                if prev is not None:
                    self._keys.remove(key)
                    events.append(Event("DELETE", KeyValue(key, b"", 0, rev, 0), prev, rev))
                results.append(prev)
            else:  # "delp"
                doomed = list(self._prefix_keys(key, None))
                prevs = []
                for k in doomed:
                    prev = kvs.pop(k)
                    prevs.append(prev)
                    events.append(Event("DELETE", KeyValue(k, b"", 0, rev, 0), prev, rev))
                # Remove the contiguous run in one go: O(log n + k), not k separate removals.
                if doomed:
                    start = self._keys.bisect_left(doomed[0])
                    del self._keys[start : start + len(doomed)]
                results.append(prevs)
        if len(events) != n_events:
            self.revision = rev
            self._bound_history()
        return TxnResult(succeeded, self.revision, results)

    def _bound_history(self) -> None:
        events = self._events
        excess = len(events) - self._hist_start - self.history_limit
        if excess <= 0:
            return
        # Drop whole revisions: the revision of the last event over the limit goes entirely.
        cut = self._hist_start + excess
        dropped_rev = events[cut - 1].revision
        cut = bisect_right(events, dropped_rev, lo=cut, key=_event_revision)
        self.compact_revision = dropped_rev
        self._hist_start = cut
        if cut >= _MIN_TRIM_CHUNK and cut * 2 >= len(events):
            del events[:cut]
            self._hist_start = 0

    # --- reads ----------------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        return self._kvs.get(key)

    def __len__(self) -> int:
        return len(self._kvs)

    def _prefix_keys(self, prefix: str, start_after: str | None) -> Iterable[str]:
        if start_after is not None and start_after >= prefix:
            it = self._keys.irange(start_after, None, inclusive=(False, True))
        else:
            it = self._keys.irange(prefix, None)
        for k in it:
            if not k.startswith(prefix):
                return
            yield k

    def range(self, prefix: str, limit: int = 0, start_after: str | None = None) -> RangeResult:
        """Keys starting with ``prefix`` (all keys for ""), in key order, after ``start_after``.

        ``limit`` 0 means no limit; ``more`` is True when keys remain after the returned ones,
        so the next page is ``range(prefix, limit, start_after=kvs[-1].key)``.
        """
        if type(prefix) is not str:
            raise InvalidCommand(f"prefix must be a str, got {type(prefix).__name__}")
        if type(limit) is not int or limit < 0:
            raise InvalidCommand(f"limit must be a non-negative int, got {limit!r}")
        if start_after is not None and type(start_after) is not str:
            raise InvalidCommand(
                f"start_after must be a str or None, got {type(start_after).__name__}"
            )
        kvs = self._kvs
        keys = self._prefix_keys(prefix, start_after)
        if limit == 0:
            return RangeResult([kvs[k] for k in keys], False, self.revision)
        page = [kvs[k] for k in islice(keys, limit)]
        more = next(iter(keys), None) is not None
        return RangeResult(page, more, self.revision)

    def events_since(self, start_revision: int, prefix: str = "") -> list[Event]:
        """Events with ``revision >= start_revision`` under ``prefix``, in revision order.

        Raises :class:`Compacted` when ``start_revision <= compact_revision`` (some of the
        requested events are gone). O(log n + k) for k retained events from that revision.
        """
        if type(start_revision) is not int:
            raise InvalidCommand(
                f"start_revision must be an int, got {type(start_revision).__name__}"
            )
        if start_revision <= self.compact_revision:
            raise Compacted(start_revision, self.compact_revision)
        events = self._events
        i = bisect_left(events, start_revision, lo=self._hist_start, key=_event_revision)
        if not prefix:
            return events[i:]
        # A slice, not islice: islice would walk the i skipped events one by one.
        return [e for e in events[i:] if e.kv.key.startswith(prefix)]

    def digest(self) -> str:
        """sha256 over the revision and every key with its value and revisions, in key order."""
        h = hashlib.sha256(_packb(self.revision))
        kvs = self._kvs
        for k in self._keys:
            kv = kvs[k]
            h.update(
                _packb(
                    (k, kv.value, kv.create_revision, kv.mod_revision, kv.version),
                    use_bin_type=True,
                )
            )
        return h.hexdigest()

    # --- snapshots (pysyncobj pickles the state machine) ----------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return self.frozen_view().columns()

    def frozen_view(self) -> StateView:
        """The state as it is now, for a snapshot written on another thread while applies go on.

        Cheap (two list copies: ~1 ms at 60,000 keys and 100,000 events) because every key,
        value and event is an immutable object the view shares with the state. It pickles
        exactly as the KVState would have at this moment, and unpickles into a KVState."""
        return StateView(
            self.history_limit,
            self.revision,
            self.compact_revision,
            list(self._kvs.values()),
            self._events[self._hist_start :],
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        fmt = state.get("format")
        if fmt == 1:
            self._set_state_v1(state)
            return
        if fmt != _STATE_FORMAT:
            raise ValueError(f"unsupported KVState snapshot format {fmt!r}")
        self.history_limit = state["history_limit"]
        self.revision = state["revision"]
        self.compact_revision = state["compact_revision"]
        keys = state["keys"]
        table: list[KeyValue | None] = [None]
        table += map(
            KeyValue,
            keys,
            state["values"],
            state["create_revisions"],
            state["mod_revisions"],
            state["versions"],
        )
        live = state["live"]
        kvs = dict(zip(islice(keys, live), islice(table, 1, live + 1), strict=True))
        self._kvs = kvs
        self._keys = SortedList(kvs)
        row = table.__getitem__
        self._events = list(
            map(
                Event,  # type: ignore[arg-type]  # an event's kv row is never 0 (None)
                state["event_types"],
                map(row, state["event_kvs"]),
                map(row, state["event_prev_kvs"]),
                state["event_revisions"],
            )
        )
        self._hist_start = 0

    def _set_state_v1(self, state: dict[str, Any]) -> None:
        # Format 1 (snapshots written before format 2): a tuple per key, two per event.
        self.history_limit = state["history_limit"]
        self.revision = state["revision"]
        self.compact_revision = state["compact_revision"]
        kvs = {t[0]: KeyValue(*t) for t in state["kvs"]}
        self._kvs = kvs
        self._keys = SortedList(kvs)

        def unflat(t: tuple[Any, ...] | None) -> KeyValue | None:
            if t is None:
                return None
            cur = kvs.get(t[0])
            # Share the object with the live key when it is the same version (halves memory).
            if cur is not None and cur.mod_revision == t[3]:
                return cur
            return KeyValue(*t)

        self._events = [
            Event(typ, unflat(kv), unflat(prev), rev)  # type: ignore[arg-type]
            for typ, kv, prev, rev in state["events"]
        ]
        self._hist_start = 0
