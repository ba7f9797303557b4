"""Value types shared by the state machine, its replicated binding and their users.

Everything here is plain immutable data: these objects are stored inside the state machine,
which pysyncobj pickles for snapshots, and they are handed to trio code on other threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "COMPARE_OPS",
    "COMPARE_TARGETS",
    "Compacted",
    "Compare",
    "Event",
    "InvalidCommand",
    "KeyValue",
    "Op",
    "RangeResult",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TxnResult",
]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as stored at ``mod_revision``.

    ``version`` counts the puts since the key was (re)created, so it is 1 after a create;
    a deleted key reads as absent, and the DELETE event carries ``version == 0``.
    """

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class Event:
    """A change at ``revision``: type ``"PUT"`` or ``"DELETE"``.

    For a DELETE, ``kv`` has the key, ``value=b""``, ``create_revision=0``,
    ``mod_revision`` = the deletion revision and ``version=0``; ``prev_kv`` is the deleted value.
    For a PUT, ``prev_kv`` is the value before the put (None on create).
    """

    type: str
    kv: KeyValue
    prev_kv: KeyValue | None
    revision: int


# What a Compare may test; "exists" compares with a bool, "value" with bytes, the rest with ints.
COMPARE_TARGETS = frozenset({"version", "create_revision", "mod_revision", "value", "exists"})
# "exists" supports only == and != (an order on booleans means nothing here).
COMPARE_OPS = frozenset({"==", "!=", "<", ">"})


@dataclass(frozen=True, slots=True)
class Compare:
    """A txn guard, like etcd's: ``<target of key> <op> <value>``.

    An absent key has version, create_revision and mod_revision 0 and ``exists`` False; a
    ``value`` compare on an absent key is false whatever the op (etcd does the same: there is
    no value to compare).
    """

    key: str
    target: str
    op: str
    value: int | bytes | bool

    @staticmethod
    def exists(key: str) -> Compare:
        return Compare(key, "exists", "==", True)

    @staticmethod
    def absent(key: str) -> Compare:
        return Compare(key, "exists", "==", False)

    @staticmethod
    def mod_revision(key: str, op: str, value: int) -> Compare:
        return Compare(key, "mod_revision", op, value)

    @staticmethod
    def create_revision(key: str, op: str, value: int) -> Compare:
        return Compare(key, "create_revision", op, value)

    @staticmethod
    def version(key: str, op: str, value: int) -> Compare:
        return Compare(key, "version", op, value)

    @staticmethod
    def value_is(key: str, op: str, value: bytes) -> Compare:
        return Compare(key, "value", op, value)


class Op:
    """Builders of txn operations. An op is a plain tuple (it is msgpack-encoded as is).

    Results in ``TxnResult.results``, one per op: put -> previous KeyValue or None,
    delete -> previous KeyValue or None, delete_prefix -> list of deleted KeyValues (key order),
    get -> KeyValue or None (as seen at that point of the txn).
    """

    PUT = "put"
    DELETE = "del"
    GET = "get"
    DELETE_PREFIX = "delp"

    @staticmethod
    def put(key: str, value: bytes) -> tuple[str, str, bytes]:
        return ("put", key, value)

    @staticmethod
    def delete(key: str) -> tuple[str, str]:
        return ("del", key)

    @staticmethod
    def get(key: str) -> tuple[str, str]:
        return ("get", key)

    @staticmethod
    def delete_prefix(prefix: str) -> tuple[str, str]:
        return ("delp", prefix)


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``revision`` is the store revision after the txn (unchanged if it wrote nothing)."""

    succeeded: bool
    revision: int
    results: list[Any]


@dataclass(frozen=True, slots=True)
class RangeResult:
    """``kvs`` in key order; ``more`` says keys under the prefix remain after the last one."""

    kvs: list[KeyValue]
    more: bool
    revision: int


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class InvalidCommand(StoreError, ValueError):
    """A command (or an argument to build one) is malformed; nothing was applied."""


class Compacted(StoreError):
    """The requested revision is older than the retained watch history (HTTP 410 Gone)."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted: the watch history starts after "
            f"revision {compact_revision}; re-list and watch from the listed revision + 1"
        )
        self.requested = requested
        self.compact_revision = compact_revision

    def __reduce__(self) -> tuple[Any, ...]:
        return (Compacted, (self.requested, self.compact_revision))


class StoreUnavailable(StoreError):
    """No leader, no quorum, closed, or timed out.

    ``maybe_committed`` is True when the write was proposed and may still be (or have been)
    applied: the caller must not assume it failed.
    """

    def __init__(self, message: str, *, maybe_committed: bool = False) -> None:
        super().__init__(message)
        self.maybe_committed = maybe_committed

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_unavailable, (str(self), self.maybe_committed))


def _rebuild_unavailable(message: str, maybe_committed: bool) -> StoreUnavailable:
    return StoreUnavailable(message, maybe_committed=maybe_committed)


class Store(Protocol):
    """The async store every package codes against (MemoryStore, RaftStore).

    Reads are linearizable unless ``linearizable=False`` (then possibly stale, served locally).
    """

    async def get(self, key: str, *, linearizable: bool = True) -> KeyValue | None: ...

    async def range(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        linearizable: bool = True,
    ) -> RangeResult: ...

    async def put(self, key: str, value: bytes) -> tuple[int, KeyValue | None]: ...

    async def delete(self, key: str) -> tuple[int, KeyValue | None]: ...

    async def txn(
        self, compares: list[Compare], success: list[tuple], failure: list[tuple]
    ) -> TxnResult: ...

    async def txn_many(
        self, txns: list[tuple[list[Compare], list[tuple], list[tuple]]]
    ) -> list[TxnResult]: ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]: ...

    @property
    def revision(self) -> int: ...

    @property
    def compact_revision(self) -> int: ...

    async def barrier(self) -> int: ...

    def is_leader(self) -> bool: ...

    def leadership(self) -> AsyncIterator[bool]: ...

    def status(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
