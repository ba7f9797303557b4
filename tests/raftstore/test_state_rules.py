"""KVState: the etcd rules the rest of the system relies on, one example each."""

from __future__ import annotations

import time

import msgpack
import pytest

from raftstore import (
    Compacted,
    Compare,
    InvalidCommand,
    KVState,
    Op,
    encode_batch,
    encode_delete,
    encode_noop,
    encode_put,
    encode_txn,
)


def state_with(*puts: tuple[str, bytes]) -> KVState:
    s = KVState()
    for k, v in puts:
        s.apply(encode_put(k, v))
    return s


def test_empty_store_is_revision_1_and_each_change_adds_one() -> None:
    s = KVState()
    assert (s.revision, s.compact_revision) == (1, 0)
    assert s.apply(encode_put("a", b"1")) == (2, None)
    # etcd: a put with an unchanged value is still a change (new mod_revision and version).
    rev, prev = s.apply(encode_put("a", b"1"))
    assert rev == 3 and prev is not None and prev.version == 1
    assert s.apply(encode_delete("nope")) == (3, None)
    assert s.apply(encode_noop()) == 3


def test_txn_is_one_revision_and_failed_txn_without_writes_adds_none() -> None:
    s = state_with(("a", b"1"))
    r = s.apply(encode_txn([Compare.exists("a")], [Op.put("b", b"2"), Op.put("c", b"3")], []))
    assert r.succeeded and r.revision == 3
    assert {e.revision for e in s.events_since(3)} == {3} and len(s.events_since(3)) == 2
    r = s.apply(encode_txn([Compare.absent("a")], [Op.put("x", b"1")], [Op.get("a")]))
    assert not r.succeeded and r.revision == 3 and r.results[0].value == b"1"
    assert s.revision == 3


def test_get_inside_txn_sees_earlier_ops() -> None:
    s = KVState()
    r = s.apply(encode_txn([], [Op.put("a", b"1"), Op.get("a")], []))
    assert r.results[0] is None and r.results[1].mod_revision == 2


def test_delete_prefix_is_one_revision_with_prev_values() -> None:
    s = state_with(("ns/a", b"1"), ("ns/b", b"2"), ("nt", b"3"))
    r = s.apply(encode_txn([], [Op.delete_prefix("ns/")], []))
    assert r.revision == 5
    assert [kv.key for kv in r.results[0]] == ["ns/a", "ns/b"]
    events = s.events_since(5)
    assert [
        (e.type, e.kv.key, e.kv.mod_revision, e.kv.version, e.prev_kv and e.prev_kv.value)
        for e in events
    ] == [
        ("DELETE", "ns/a", 5, 0, b"1"),
        ("DELETE", "ns/b", 5, 0, b"2"),
    ]
    assert [kv.key for kv in s.range("").kvs] == ["nt"]
    # Nothing under the prefix: no change, no revision.
    assert s.apply(encode_txn([], [Op.delete_prefix("ns/")], [])).revision == 5


@pytest.mark.parametrize(
    ("compare", "expected"),
    [
        (Compare.version("a", "==", 2), True),
        (Compare.version("a", ">", 2), False),  # equal is not greater
        (Compare.version("a", "<", 2), False),
        (Compare.version("a", "!=", 2), False),
        (Compare.version("a", ">", 1), True),
        (Compare.version("a", "<", 3), True),
        (Compare.create_revision("a", "==", 3), True),
        (Compare.create_revision("a", "<", 3), False),
        (Compare.mod_revision("a", "==", 4), True),
        (Compare.mod_revision("a", ">", 4), False),
        (Compare.mod_revision("a", ">", 3), True),
        (Compare.value_is("a", "==", b"new"), True),
        (Compare.value_is("a", ">", b"new"), False),
        (Compare.value_is("a", "<", b"newer"), True),
        (Compare.exists("a"), True),
        (Compare("a", "exists", "!=", True), False),
        # An absent key has version/revisions 0; it has no value, so value compares are false.
        (Compare.version("gone", "==", 0), True),
        (Compare.mod_revision("gone", "<", 1), True),
        (Compare.create_revision("gone", ">", 0), False),
        (Compare.value_is("gone", "==", b""), False),
        (Compare.value_is("gone", "!=", b"x"), False),
        (Compare.absent("gone"), True),
    ],
)
def test_compare_targets_and_ops(compare: Compare, expected: bool) -> None:
    # "a": create_revision 3, mod_revision 4, version 2 (all different, so mixing them up shows).
    s = state_with(("z", b"0"), ("a", b"old"), ("a", b"new"))
    r = s.apply(encode_txn([compare], [Op.get("a")], []))
    assert r.succeeded is expected


def test_batch_items_get_their_own_revisions_and_bad_items_fail_alone() -> None:
    s = KVState()
    bad = msgpack.packb(["put", "k", "not bytes"])
    results = s.apply(
        encode_batch([encode_put("a", b"1"), bad, encode_delete("zz"), encode_put("b", b"2")])
    )
    assert results[0] == (2, None)
    assert isinstance(results[1], InvalidCommand) and "value must be bytes" in str(results[1])
    assert results[2] == (2, None)
    assert results[3] == (3, None)
    assert s.revision == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb(["put", "a", b"1"]) + b"\x00", "not valid msgpack"),
        (msgpack.packb({"put": 1}), "non-empty array"),
        (msgpack.packb([]), "non-empty array"),
        (msgpack.packb(["zap", "a"]), "unknown command"),
        (msgpack.packb(["put", "a"]), "put is"),
        (msgpack.packb(["put", b"a", b"1"]), "key must be a str"),
        (msgpack.packb(["put", "", b"1"]), "must not be empty"),
        (msgpack.packb(["put", "a", "1"]), "value must be bytes"),
        (msgpack.packb(["txn", [["a", "version", "==", True]], [], []]), "needs an int"),
        (msgpack.packb(["txn", [["a", "exists", "<", True]], [], []]), "only == and !="),
        (msgpack.packb(["txn", [["a", "version", "~", 1]], [], []]), "unknown compare op"),
        (
            msgpack.packb(["txn", [], [["put", "a", b"1"], ["put", "a", b"2"]], []]),
            "more than once",
        ),
        (
            msgpack.packb(["txn", [], [["delp", "a"], ["put", "ab", b"2"]], []]),
            "deletes its prefix",
        ),
        (msgpack.packb(["txn", [], [["delp", "a"], ["delp", "ab"]], []]), "overlapping"),
        (msgpack.packb(["txn", [], [["mv", "a"]], []]), "unknown txn op"),
        (msgpack.packb(["txn", [], {}, []]), "must be a list"),
        (msgpack.packb(["batch", "x"]), "batch is"),
        (msgpack.packb(["noop", 1]), "noop is"),
        (b"\x81\xa1a\xa1b", "non-empty array"),
    ],
)
def test_malformed_commands_are_rejected_clearly_without_change(data: bytes, message: str) -> None:
    s = state_with(("a", b"1"))
    digest = s.digest()
    with pytest.raises(InvalidCommand, match=message):
        s.apply(data)
    assert s.digest() == digest and s.revision == 2 and len(s.events_since(1)) == 1


def test_encoders_reject_bad_arguments() -> None:
    with pytest.raises(InvalidCommand):
        encode_put("a", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand):
        encode_delete(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand):
        encode_txn([Compare("a", "mod_revision", "==", b"1")], [], [])
    with pytest.raises(InvalidCommand):
        encode_batch([encode_batch([encode_noop()])])
    with pytest.raises(InvalidCommand):
        encode_batch(["put"])  # type: ignore[list-item]


def test_large_batch_headers() -> None:
    # Array headers change size at 16 and 65536 items.
    for n in (0, 15, 16, 65535, 65536):
        s = KVState(history_limit=10)
        results = s.apply(encode_batch([encode_put("k", b"v")] * n))
        assert len(results) == n and s.revision == 1 + n


def test_history_drops_whole_revisions() -> None:
    s = KVState(history_limit=3)
    s.apply(encode_put("a", b"1"))  # rev 2
    s.apply(encode_txn([], [Op.put("b", b"1"), Op.put("c", b"1"), Op.put("d", b"1")], []))  # 3
    assert s.compact_revision == 2  # 4 events > 3: revision 2 goes
    s.apply(encode_put("e", b"1"))  # rev 4: revision 3's three events must go together
    assert s.compact_revision == 3
    assert [e.revision for e in s.events_since(4)] == [4]
    with pytest.raises(Compacted, match="revision 3 has been compacted"):
        s.events_since(3)


def test_events_since_future_revision_is_empty() -> None:
    s = state_with(("a", b"1"))
    assert s.events_since(3) == []
    assert s.events_since(100) == []


def test_range_rejects_bad_arguments() -> None:
    s = KVState()
    with pytest.raises(InvalidCommand, match="limit"):
        s.range("", limit=-1)
    with pytest.raises(InvalidCommand, match="prefix"):
        s.range(None)  # type: ignore[arg-type]


def test_history_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="history_limit"):
        KVState(history_limit=0)


def test_long_history_is_trimmed_in_chunks_and_stays_correct() -> None:
    s = KVState(history_limit=1000)
    for i in range(10_000):
        s.apply(encode_put(f"k{i % 37}", b"v"))
    assert s.compact_revision == s.revision - 1000
    events = s.events_since(s.compact_revision + 1)
    assert [e.revision for e in events] == list(range(s.compact_revision + 1, s.revision + 1))
    # The dropped prefix is physically removed, so memory stays bounded.
    assert len(s._events) < 2 * 1000 + 1024


def test_events_since_cost_does_not_grow_with_history() -> None:
    # Watchers poll the tail of a long history after every write: that must cost O(log n + k),
    # not a walk over the n retained events (O(n) here is ~100x slower than the bound).
    s = KVState(history_limit=100_000)
    for i in range(100_000):
        s.apply(encode_put(f"/pods/p{i % 1000}", b"v"))
    started = time.perf_counter()
    for _ in range(10_000):
        assert len(s.events_since(s.revision - 4, "/pods/")) == 5
    assert time.perf_counter() - started < 2.0
