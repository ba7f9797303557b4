"""Property tests: KVState against a plain-dict model of etcd's revision rules.

The model below is written for clarity, not speed: a dict of keys, a revision counter and the
full event log. Hypothesis drives both with the same random commands (put, delete, txn with every
compare target and op, delete_prefix, batches with malformed items, noop, garbage) and checks
results, revisions, key contents, range pagination, watch history, digests and pickling.
"""

from __future__ import annotations

import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore import (
    Compacted,
    Compare,
    Event,
    InvalidCommand,
    KeyValue,
    KVState,
    Op,
    TxnResult,
    encode_batch,
    encode_delete,
    encode_noop,
    encode_put,
    encode_txn,
)

KEYS = ["a", "ab", "abc", "b", "ba", "c/1", "c/2", "c/3"]
PREFIXES = ["", "a", "ab", "b", "c/", "c/2", "z"]

keys = st.sampled_from(KEYS)
values = st.binary(max_size=2)
cmp_ops = st.sampled_from(["==", "!=", "<", ">"])

compares = st.one_of(
    st.builds(Compare, keys, st.just("exists"), st.sampled_from(["==", "!="]), st.booleans()),
    st.builds(Compare, keys, st.just("value"), cmp_ops, values),
    st.builds(
        Compare,
        keys,
        st.sampled_from(["version", "create_revision", "mod_revision"]),
        cmp_ops,
        st.one_of(st.integers(0, 4), st.integers(0, 40)),
    ),
)
txn_ops = st.one_of(
    st.builds(Op.put, keys, values),
    st.builds(Op.delete, keys),
    st.builds(Op.get, keys),
    st.builds(Op.delete_prefix, st.sampled_from(PREFIXES)),
)
malformed = st.sampled_from(
    [
        msgpack.packb(["put", 1, b"x"]),
        msgpack.packb(["put", "k", "not-bytes"]),
        msgpack.packb(["del"]),
        msgpack.packb(["txn", [["a", "size", "==", 1]], [], []]),
        msgpack.packb(["txn", [], [["put", "a", b"1"], ["del", "a"]], []]),
        msgpack.packb(["frobnicate", "a"]),
        msgpack.packb({"put": "a"}),
    ]
)
simple_commands = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("del"), keys),
    st.tuples(
        st.just("txn"),
        st.lists(compares, max_size=3),
        st.lists(txn_ops, max_size=4),
        st.lists(txn_ops, max_size=3),
    ),
    st.tuples(st.just("noop")),
    st.tuples(st.just("bad"), malformed),
)
commands = st.one_of(
    simple_commands,
    simple_commands,
    st.tuples(st.just("batch"), st.lists(simple_commands, max_size=5)),
)


def txn_is_valid(ops: list[tuple]) -> bool:
    """A txn may write each key once and may not write under a prefix it also deletes."""
    written = [op[1] for op in ops if op[0] in ("put", "del")]
    prefixes = [op[1] for op in ops if op[0] == "delp"]
    if len(written) != len(set(written)):
        return False
    for i, p in enumerate(prefixes):
        if any(k.startswith(p) for k in written):
            return False
        if any(q.startswith(p) or p.startswith(q) for q in prefixes[i + 1 :]):
            return False
    return True


def raw_txn(spec: tuple) -> bytes:
    """A txn encoded without the encoder's checks, to test that apply checks it too."""
    cmps = [[c.key, c.target, c.op, c.value] for c in spec[1]]
    return msgpack.packb(["txn", cmps, [list(o) for o in spec[2]], [list(o) for o in spec[3]]])


def encode_or_raw(spec: tuple) -> bytes:
    try:
        return encode(spec)
    except InvalidCommand:
        return raw_txn(spec)


def encode(spec: tuple) -> bytes:
    kind = spec[0]
    if kind == "put":
        return encode_put(spec[1], spec[2])
    if kind == "del":
        return encode_delete(spec[1])
    if kind == "txn":
        return encode_txn(spec[1], spec[2], spec[3])
    if kind == "noop":
        return encode_noop()
    if kind == "bad":
        return spec[1]
    return encode_batch([encode_or_raw(s) for s in spec[1]])


class Model:
    def __init__(self) -> None:
        self.kvs: dict[str, KeyValue] = {}
        self.revision = 1
        self.log: list[Event] = []

    def _write(self, rev: int, key: str, value: bytes | None) -> KeyValue | None:
        prev = self.kvs.get(key)
        if value is None:
            if prev is not None:
                del self.kvs[key]
                self.log.append(Event("DELETE", KeyValue(key, b"", 0, rev, 0), prev, rev))
            return prev
        if prev is None:
            kv = KeyValue(key, value, rev, rev, 1)
        else:
            kv = KeyValue(key, value, prev.create_revision, rev, prev.version + 1)
        self.kvs[key] = kv
        self.log.append(Event("PUT", kv, prev, rev))
        return prev

    def check(self, c: Compare) -> bool:
        kv = self.kvs.get(c.key)
        if c.target == "exists":
            have: Any = kv is not None
        elif c.target == "value":
            if kv is None:
                return False
            have = kv.value
        else:
            have = getattr(kv, c.target) if kv is not None else 0
        return {
            "==": have == c.value,
            "!=": have != c.value,
            "<": have < c.value,
            ">": have > c.value,
        }[c.op]

    def apply(self, spec: tuple) -> Any:
        kind = spec[0]
        if kind == "bad":
            raise InvalidCommand("malformed")
        if kind == "noop":
            return self.revision
        if kind == "batch":
            out = []
            for s in spec[1]:
                try:
                    out.append(self.apply(s))
                except InvalidCommand as exc:
                    out.append(exc)
            return out
        rev = self.revision + 1
        before = len(self.log)
        if kind == "put":
            result: Any = (rev, self._write(rev, spec[1], spec[2]))
        elif kind == "del":
            prev = self._write(rev, spec[1], None)
            result = (rev if prev else self.revision, prev)
        else:
            _, cmps, success, failure = spec
            if not (txn_is_valid(success) and txn_is_valid(failure)):
                raise InvalidCommand("invalid txn")
            ok = all(self.check(c) for c in cmps)
            results: list[Any] = []
            for op in success if ok else failure:
                if op[0] == "get":
                    results.append(self.kvs.get(op[1]))
                elif op[0] == "put":
                    results.append(self._write(rev, op[1], op[2]))
                elif op[0] == "del":
                    results.append(self._write(rev, op[1], None))
                else:
                    doomed = sorted(k for k in self.kvs if k.startswith(op[1]))
                    results.append([self._write(rev, k, None) for k in doomed])
            changed = len(self.log) != before
            result = TxnResult(ok, rev if changed else self.revision, results)
        if len(self.log) != before:
            self.revision = rev
        return result

    def compact_revision(self, limit: int) -> int:
        """Drop whole oldest revisions until at most ``limit`` events remain."""
        r = 0
        while sum(1 for e in self.log if e.revision > r) > limit:
            r = min(e.revision for e in self.log if e.revision > r)
        return r


def same_result(got: Any, want: Any) -> bool:
    if isinstance(want, InvalidCommand):
        return isinstance(got, InvalidCommand)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same_result, got, want))
    return bool(got == want)


def apply_both(state: KVState, model: Model, spec: tuple) -> None:
    try:
        data = encode(spec)
    except InvalidCommand:
        # The encoder refuses what apply would refuse; the model must agree it is invalid,
        # and apply must refuse the same txn encoded without the encoder's checks.
        with pytest.raises(InvalidCommand):
            model.apply(spec)
        data = raw_txn(spec)
    try:
        want = model.apply(spec)
    except InvalidCommand:
        before = (
            state.revision,
            state.digest(),
            len(state.events_since(state.compact_revision + 1)),
        )
        with pytest.raises(InvalidCommand):
            state.apply(data)
        after = (
            state.revision,
            state.digest(),
            len(state.events_since(state.compact_revision + 1)),
        )
        assert after == before, "a rejected command must not change anything"
        return
    got = state.apply(data)
    assert same_result(got, want), (spec, got, want)


def assert_same_contents(state: KVState, model: Model) -> None:
    assert state.revision == model.revision
    assert state.range("").kvs == [model.kvs[k] for k in sorted(model.kvs)]
    for k in KEYS:
        assert state.get(k) == model.kvs.get(k)


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, max_size=40))
def test_commands_match_model(specs: list[tuple]) -> None:
    state, model = KVState(), Model()
    for spec in specs:
        apply_both(state, model, spec)
        assert_same_contents(state, model)
    # Nothing trimmed with the default limit: the whole log is the history.
    assert state.compact_revision == 0
    assert state.events_since(1) == model.log
    for prefix in PREFIXES:
        for start in range(1, model.revision + 2):
            want = [e for e in model.log if e.revision >= start and e.kv.key.startswith(prefix)]
            assert state.events_since(start, prefix) == want


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, max_size=40), st.integers(1, 6))
def test_bounded_history_keeps_whole_revisions(specs: list[tuple], limit: int) -> None:
    state, model = KVState(history_limit=limit), Model()
    for spec in specs:
        apply_both(state, model, spec)
        compact = model.compact_revision(limit)
        assert state.compact_revision == compact
        for start in range(0, model.revision + 2):
            if start <= compact:
                with pytest.raises(Compacted) as info:
                    state.events_since(start)
                assert (info.value.requested, info.value.compact_revision) == (start, compact)
            else:
                assert state.events_since(start) == [e for e in model.log if e.revision >= start]


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, max_size=30), st.sampled_from(PREFIXES), st.integers(1, 4))
def test_range_pages_concatenate_to_the_full_range(
    specs: list[tuple], prefix: str, limit: int
) -> None:
    state, model = KVState(), Model()
    for spec in specs:
        apply_both(state, model, spec)
    full = state.range(prefix)
    assert full.kvs == [model.kvs[k] for k in sorted(model.kvs) if k.startswith(prefix)]
    assert not full.more and full.revision == model.revision
    pages: list[KeyValue] = []
    start_after = None
    for _ in range(len(KEYS) + 1):
        page = state.range(prefix, limit=limit, start_after=start_after)
        assert len(page.kvs) <= limit
        pages.extend(page.kvs)
        if not page.more:
            break
        assert len(page.kvs) == limit
        start_after = page.kvs[-1].key
    assert pages == full.kvs


@settings(max_examples=150, deadline=None)
@given(st.lists(commands, max_size=30), st.lists(commands, max_size=10), st.integers(1, 8))
def test_digest_and_pickle_round_trip(
    specs: list[tuple], more_specs: list[tuple], limit: int
) -> None:
    a, b = KVState(history_limit=limit), KVState(history_limit=limit)
    for spec in specs:
        for s in (a, b):
            try:
                s.apply(encode_or_raw(spec))
            except InvalidCommand:
                pass
    assert a.digest() == b.digest()
    c = pickle.loads(pickle.dumps(a))
    assert (c.revision, c.compact_revision, c.history_limit) == (
        a.revision,
        a.compact_revision,
        a.history_limit,
    )
    assert c.digest() == a.digest()
    assert c.range("") == a.range("")
    assert c.events_since(a.compact_revision + 1) == a.events_since(a.compact_revision + 1)
    # The copy keeps evolving exactly like the original.
    for spec in more_specs:
        results = []
        for s in (a, c):
            try:
                results.append(s.apply(encode_or_raw(spec)))
            except InvalidCommand as exc:
                results.append(exc)
        assert same_result(results[1], results[0])
        assert c.digest() == a.digest()
        assert c.compact_revision == a.compact_revision
        assert c.events_since(a.compact_revision + 1) == a.events_since(a.compact_revision + 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(keys, values), min_size=1, max_size=10))
def test_digest_differs_when_contents_differ(puts: list[tuple[str, bytes]]) -> None:
    a, b = KVState(), KVState()
    for k, v in puts:
        a.apply(encode_put(k, v))
        b.apply(encode_put(k, v))
    b.apply(encode_put(puts[0][0], puts[0][1] + b"!"))
    a.apply(encode_put(puts[0][0], puts[0][1] + b"?"))
    assert a.revision == b.revision
    assert a.digest() != b.digest()


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash_apply(data: bytes) -> None:
    state = KVState()
    state.apply(encode_put("k", b"v"))
    digest = state.digest()
    try:
        state.apply(data)
    except InvalidCommand:
        assert state.digest() == digest and state.revision == 2
