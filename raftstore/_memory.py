"""MemoryStore: the Store protocol over one in-process KVState (no Raft, no threads).

This is the test double for every package built on the store (API server, scheduler,
controllers) and the store of a single-master development mode. It is faithful on purpose:
every write goes through the same encoded commands and ``KVState.apply`` as a replica does,
so revisions, txn results, watch events, :class:`Compacted` and :class:`InvalidCommand` are
exactly those of the replicated store. What it cannot have (a leader change, a lost quorum)
can be simulated with :meth:`MemoryStore.set_leader` and :meth:`MemoryStore.set_available`.

Use it from one trio run; it is not thread-safe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio

from ._commands import encode_batch, encode_delete, encode_noop, encode_put, encode_txn
from ._state import DEFAULT_HISTORY_LIMIT, KVState
from ._types import (
    Compare,
    Event,
    InvalidCommand,
    KeyValue,
    RangeResult,
    StoreUnavailable,
    TxnResult,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    """An in-process :class:`~raftstore.Store`; always the leader unless told otherwise."""

    def __init__(self, *, history_limit: int = DEFAULT_HISTORY_LIMIT, name: str = "memory") -> None:
        self._state = KVState(history_limit)
        self._name = name
        self._applied = 0
        self._closed = False
        self._available = True
        self._leader = True
        # Replaced on every change: one set() wakes every waiting watcher at once (fan-out);
        # each then pulls its own events from the shared history.
        self._changed = trio.Event()
        self._leadership_changed = trio.Event()

    # --- failure simulation (for tests of code that must survive them) -------------------------

    def set_leader(self, leader: bool) -> None:
        """Pretend this replica gained/lost leadership (writes still work, as via a follower)."""
        if leader != self._leader:
            self._leader = leader
            self._notify_leadership()

    def set_available(self, available: bool) -> None:
        """Pretend the quorum is lost (False): writes, barriers and linearizable reads raise
        :class:`StoreUnavailable` and ``is_leader()`` is False; local reads still answer."""
        if available != self._available:
            self._available = available
            self._notify_leadership()

    # --- internals ------------------------------------------------------------------------------

    def _notify_leadership(self) -> None:
        event, self._leadership_changed = self._leadership_changed, trio.Event()
        event.set()

    def _wake_watchers(self) -> None:
        event, self._changed = self._changed, trio.Event()
        event.set()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")

    def _check_quorum(self) -> None:
        self._check_open()
        if not self._available:
            raise StoreUnavailable("no quorum (simulated by set_available(False))")

    async def _apply(self, command: bytes) -> Any:
        # A checkpoint first, like a real proposal: cancellation before it means "not applied".
        await trio.lowlevel.checkpoint()
        self._check_quorum()
        before = self._state.revision
        result = self._state.apply(command)
        self._applied += 1
        if self._state.revision != before:
            self._wake_watchers()
        return result

    async def _read(self, linearizable: bool) -> None:
        await trio.lowlevel.checkpoint()
        if linearizable:
            self._check_quorum()
        else:
            self._check_open()

    # --- the Store protocol ---------------------------------------------------------------------

    async def get(self, key: str, *, linearizable: bool = True) -> KeyValue | None:
        if type(key) is not str:
            raise InvalidCommand(f"key must be a str, got {type(key).__name__}")
        await self._read(linearizable)
        return self._state.get(key)

    async def range(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        linearizable: bool = True,
    ) -> RangeResult:
        await self._read(linearizable)
        return self._state.range(prefix, limit, start_after)

    async def put(self, key: str, value: bytes) -> tuple[int, KeyValue | None]:
        result: tuple[int, KeyValue | None] = await self._apply(encode_put(key, value))
        return result

    async def delete(self, key: str) -> tuple[int, KeyValue | None]:
        result: tuple[int, KeyValue | None] = await self._apply(encode_delete(key))
        return result

    async def txn(
        self, compares: list[Compare], success: list[tuple], failure: list[tuple]
    ) -> TxnResult:
        result: TxnResult = await self._apply(encode_txn(compares, success, failure))
        return result

    async def txn_many(
        self, txns: Sequence[tuple[list[Compare], list[tuple], list[tuple]]]
    ) -> list[TxnResult]:
        """Several txns in one command (one Raft entry); each is its own revision if it writes."""
        batch = encode_batch([encode_txn(c, s, f) for c, s, f in txns])
        results: list[Any] = await self._apply(batch)
        for r in results:
            if isinstance(r, Exception):  # cannot happen: encode_txn checked each item
                raise r
        return results

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Yield non-empty batches of events under ``prefix`` from ``start_revision`` on.

        Raises :class:`Compacted` when ``start_revision`` (or, for a consumer that fell behind,
        its position) is no longer in the history, and :class:`StoreUnavailable` when the
        store is closed. Never returns otherwise.
        """
        if type(prefix) is not str:
            raise InvalidCommand(f"prefix must be a str, got {type(prefix).__name__}")
        position = start_revision
        state = self._state
        while True:
            self._check_open()
            changed = self._changed
            events = state.events_since(position, prefix)
            if events:
                position = events[-1].revision + 1
                await trio.lowlevel.checkpoint()
                yield events
            else:
                # Nothing under the prefix up to now: skip those revisions next time.
                position = max(position, state.revision + 1)
                await changed.wait()

    @property
    def revision(self) -> int:
        return self._state.revision

    @property
    def compact_revision(self) -> int:
        return self._state.compact_revision

    async def barrier(self) -> int:
        result: int = await self._apply(encode_noop())
        return result

    def is_leader(self) -> bool:
        return self._leader and self._available and not self._closed

    async def leadership(self) -> AsyncIterator[bool]:
        """Yield ``is_leader()`` now and after every change; the last value (False) at close."""
        current = self.is_leader()
        yield current
        while not self._closed:
            changed = self._leadership_changed
            if self.is_leader() == current:
                await changed.wait()
            if self.is_leader() != current:
                current = self.is_leader()
                yield current

    def status(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "leader": self._name if self._leader else None,
            "term": 1,
            "commit_index": self._applied,
            "applied_index": self._applied,
            "revision": self._state.revision,
            "members": [
                {
                    "name": self._name,
                    "address": "memory",
                    "match_index": None,
                    "last_contact_s": None,
                }
            ],
            "is_leader": self.is_leader(),
            "has_quorum_lease": self._available and not self._closed,
        }

    def digest(self) -> str:
        """The state digest (as every replica reports it), for tests."""
        return self._state.digest()

    async def aclose(self) -> None:
        """Close: later calls raise StoreUnavailable, watches end with it, leadership ends False."""
        await trio.lowlevel.checkpoint()
        if self._closed:
            return
        self._closed = True
        self._wake_watchers()
        self._notify_leadership()
