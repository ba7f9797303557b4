"""The state machine's command format: msgpack arrays, built and checked here.

A command is what travels through the Raft log, so it is plain msgpack (never pickle) and every
replica decodes it with :func:`decode_command`, which checks it strictly: a malformed command
is rejected with :class:`InvalidCommand` before anything is applied, identically on every
replica, so a bad entry cannot make replicas diverge.

Forms (keys are str, values bytes)::

    ["put", key, value]
    ["del", key]
    ["txn", [[key, target, op, value], ...], [op, ...], [op, ...]]
        op: ["put", key, value] | ["del", key] | ["get", key] | ["delp", prefix]
    ["batch", [command, ...]]      # commands are embedded, not nested as bytes; no nested batch
    ["noop"]
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

from ._types import COMPARE_OPS, COMPARE_TARGETS, Compare, InvalidCommand

__all__ = [
    "decode_command",
    "encode_batch",
    "encode_delete",
    "encode_noop",
    "encode_put",
    "encode_txn",
    "validate_command",
]

_packb = msgpack.packb
_unpackb = msgpack.unpackb

_PUT_TAG = _packb("put", use_bin_type=True)
_DEL_TAG = _packb("del", use_bin_type=True)
_BATCH_PREFIX = b"\x92" + _packb("batch", use_bin_type=True)
_NOOP = _packb(["noop"], use_bin_type=True)
_INT_TARGETS = frozenset({"version", "create_revision", "mod_revision"})


def _check_key(key: object, what: str = "key") -> str:
    if type(key) is not str:
        raise InvalidCommand(f"{what} must be a str, got {type(key).__name__}")
    if not key and what == "key":
        raise InvalidCommand("key must not be empty")
    return key


def _check_value(value: object) -> bytes:
    if type(value) is not bytes:
        raise InvalidCommand(f"value must be bytes, got {type(value).__name__}")
    return value


def encode_put(key: str, value: bytes) -> bytes:
    _check_key(key)
    _check_value(value)
    # Hand-assembled fixarray(3): skips building a list for the hottest command.
    return b"\x93" + _PUT_TAG + _packb(key, use_bin_type=True) + _packb(value, use_bin_type=True)


def encode_delete(key: str) -> bytes:
    _check_key(key)
    return b"\x92" + _DEL_TAG + _packb(key, use_bin_type=True)


def encode_noop() -> bytes:
    return _NOOP


def _compare_to_wire(c: object) -> list[Any]:
    if isinstance(c, Compare):
        wire = [c.key, c.target, c.op, c.value]
    elif isinstance(c, list | tuple):
        wire = list(c)
    else:
        raise InvalidCommand(f"a compare must be a Compare, got {type(c).__name__}")
    return _check_compare(wire)


def encode_txn(
    compares: Iterable[Compare], success: Iterable[Sequence[Any]], failure: Iterable[Sequence[Any]]
) -> bytes:
    """Encode a txn; raises InvalidCommand with the reason if any part is malformed."""
    wire = [
        "txn",
        [_compare_to_wire(c) for c in compares],
        _check_ops([list(op) if isinstance(op, tuple | list) else op for op in success]),
        _check_ops([list(op) if isinstance(op, tuple | list) else op for op in failure]),
    ]
    return _packb(wire, use_bin_type=True)


def encode_batch(commands: Sequence[bytes]) -> bytes:
    """Join already-encoded commands (from the encoders above) into one batch command.

    The encoded commands are spliced, not re-encoded: a batch is an array header plus their
    bytes, so batching costs no extra serialisation on the hot path.
    """
    for c in commands:
        if type(c) is not bytes:
            raise InvalidCommand(
                f"batch items must be encoded commands (bytes), got {type(c).__name__}"
            )
        if c[:1] == b"\x92" and c.startswith(_BATCH_PREFIX):
            raise InvalidCommand("a batch cannot contain a batch")
    n = len(commands)
    if n < 16:
        header = bytes((0x90 | n,))
    elif n < 0x10000:
        header = b"\xdc" + struct.pack(">H", n)
    else:
        header = b"\xdd" + struct.pack(">I", n)
    return _BATCH_PREFIX + header + b"".join(commands)


# --- validation (shared by the encoders and by apply) -------------------------------------------


def _check_compare(c: Any) -> list[Any]:
    if type(c) is not list or len(c) != 4:
        raise InvalidCommand(f"a compare must be [key, target, op, value], got {c!r:.200}")
    key, target, op, value = c
    _check_key(key)
    if target not in COMPARE_TARGETS:
        raise InvalidCommand(
            f"unknown compare target {target!r}; expected one of {sorted(COMPARE_TARGETS)}"
        )
    if op not in COMPARE_OPS:
        raise InvalidCommand(f"unknown compare op {op!r}; expected one of {sorted(COMPARE_OPS)}")
    if target == "exists":
        if type(value) is not bool:
            raise InvalidCommand("an 'exists' compare needs a bool value")
        if op not in ("==", "!="):
            raise InvalidCommand("an 'exists' compare supports only == and !=")
    elif target == "value":
        if type(value) is not bytes:
            raise InvalidCommand("a 'value' compare needs a bytes value")
    elif type(value) is not int:
        raise InvalidCommand(f"a {target!r} compare needs an int value, got {type(value).__name__}")
    return c


def _check_ops(ops: Any) -> list[Any]:
    """Check each op and that no key is written twice (one txn = one revision per key)."""
    if type(ops) is not list:
        raise InvalidCommand("txn ops must be a list")
    written: set[str] = set()
    prefixes: list[str] = []
    for op in ops:
        if type(op) is not list or not op:
            raise InvalidCommand(f"a txn op must be a non-empty list, got {op!r:.200}")
        kind = op[0]
        if kind == "put":
            if len(op) != 3:
                raise InvalidCommand('a put op is ["put", key, value]')
            _check_key(op[1])
            _check_value(op[2])
        elif kind in ("del", "get"):
            if len(op) != 2:
                raise InvalidCommand(f"a {kind} op is [{kind!r}, key]")
            _check_key(op[1])
        elif kind == "delp":
            if len(op) != 2:
                raise InvalidCommand('a delp op is ["delp", prefix]')
            _check_key(op[1], "prefix")
        else:
            raise InvalidCommand(f"unknown txn op {kind!r}; expected put, del, get or delp")
        if kind == "put" or kind == "del":
            if op[1] in written:
                raise InvalidCommand(f"txn writes key {op[1]!r} more than once")
            written.add(op[1])
        elif kind == "delp":
            prefixes.append(op[1])
    for i, p in enumerate(prefixes):
        for q in prefixes[i + 1 :]:
            if p.startswith(q) or q.startswith(p):
                raise InvalidCommand(f"txn deletes overlapping prefixes {p!r} and {q!r}")
        for k in written:
            if k.startswith(p):
                raise InvalidCommand(f"txn writes key {k!r} and also deletes its prefix {p!r}")
    return ops


def validate_command(cmd: Any, *, allow_batch: bool = True) -> list[Any]:
    """Check a decoded command's shape and types; return it unchanged or raise InvalidCommand.

    A batch's items are not checked here (each is checked when applied, so one bad item
    fails alone).
    """
    if type(cmd) is not list or not cmd:
        raise InvalidCommand(f"a command must be a non-empty array, got {type(cmd).__name__}")
    kind = cmd[0]
    n = len(cmd)
    if kind == "put":
        if n != 3:
            raise InvalidCommand('put is ["put", key, value]')
        _check_key(cmd[1])
        _check_value(cmd[2])
    elif kind == "del":
        if n != 2:
            raise InvalidCommand('del is ["del", key]')
        _check_key(cmd[1])
    elif kind == "txn":
        if n != 4:
            raise InvalidCommand('txn is ["txn", compares, success_ops, failure_ops]')
        if type(cmd[1]) is not list:
            raise InvalidCommand("txn compares must be a list")
        for c in cmd[1]:
            _check_compare(c)
        _check_ops(cmd[2])
        _check_ops(cmd[3])
    elif kind == "batch":
        if not allow_batch:
            raise InvalidCommand("a batch cannot contain a batch")
        if n != 2 or type(cmd[1]) is not list:
            raise InvalidCommand('batch is ["batch", [command, ...]]')
    elif kind == "noop":
        if n != 1:
            raise InvalidCommand('noop is ["noop"]')
    else:
        raise InvalidCommand(f"unknown command {kind!r:.100}")
    return cmd


def decode_command(data: bytes) -> list[Any]:
    """Decode and check one command; raise InvalidCommand (never anything else) if malformed."""
    if type(data) is not bytes:
        raise InvalidCommand(f"a command must be bytes, got {type(data).__name__}")
    try:
        cmd = _unpackb(data, raw=False, strict_map_key=True)
    # msgpack raises several types (ExtraData, FormatError, ValueError, UnicodeDecodeError ...).
    except Exception as exc:
        raise InvalidCommand(f"command is not valid msgpack: {exc}") from None
    return validate_command(cmd)
