"""What a snapshot holds of the KVState (its pickled layout) and how snapshot files are read.

The state's own round trip (every key, revision and event, and applying on after it) is
property-tested in test_state_model; here: older snapshots still load, objects shared in memory
stay shared (written once, one object again after loading), and the snapshot file format."""

from __future__ import annotations

import pickle
from typing import Any

from raftstore import KVState, encode_delete, encode_put


def _filled(history_limit: int = 100) -> KVState:
    state = KVState(history_limit)
    for i in range(20):
        state.apply(encode_put(f"/registry/pods/default/p{i % 7}", f"value {i}".encode() * 20))
    state.apply(encode_delete("/registry/pods/default/p3"))
    state.apply(encode_put("/registry/pods/default/p3", b"re-created"))
    return state


def _format_1(state: KVState) -> dict[str, Any]:
    """The layout snapshots had before format 2 (a tuple per key, two per event)."""

    def flat(kv: Any) -> Any:
        if kv is None:
            return None
        return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version)

    return {
        "format": 1,
        "history_limit": state.history_limit,
        "revision": state.revision,
        "compact_revision": state.compact_revision,
        "kvs": [flat(kv) for kv in state.range("").kvs],
        "events": [
            (e.type, flat(e.kv), flat(e.prev_kv), e.revision)
            for e in state.events_since(state.compact_revision + 1)
        ],
    }


def _same_state(a: KVState, b: KVState) -> None:
    assert (a.revision, a.compact_revision, a.history_limit) == (
        b.revision,
        b.compact_revision,
        b.history_limit,
    )
    assert a.digest() == b.digest()
    assert a.range("") == b.range("")
    assert a.events_since(a.compact_revision + 1) == b.events_since(b.compact_revision + 1)


def test_a_format_1_snapshot_still_loads() -> None:
    state = _filled(history_limit=10)  # some history dropped: compact_revision > 0
    assert state.compact_revision > 0
    loaded = KVState.__new__(KVState)
    loaded.__setstate__(_format_1(state))
    _same_state(loaded, state)
    loaded.apply(encode_put("/registry/pods/default/p1", b"after"))
    state.apply(encode_put("/registry/pods/default/p1", b"after"))
    _same_state(loaded, state)


def test_an_unknown_format_is_refused() -> None:
    state = KVState.__new__(KVState)
    try:
        state.__setstate__({"format": 99})
    except ValueError as exc:
        assert "format 99" in str(exc)
    else:
        raise AssertionError("an unknown snapshot format was accepted")


def test_shared_objects_are_written_once_and_shared_after_loading() -> None:
    state = KVState()
    big = [bytes([i]) * 10_000 for i in range(5)]
    for i, value in enumerate(big):
        state.apply(encode_put(f"/k{i}", value))  # live and in its event: one object
    state.apply(encode_put("/k0", b"new"))  # the old /k0 is now only in history (twice)
    blob = pickle.dumps(state, protocol=5)
    # Each 10 kB value once (plus a little): not once per event or key that holds it.
    assert 50_000 < len(blob) < 53_000
    loaded = pickle.loads(blob)
    _same_state(loaded, state)
    events = loaded.events_since(1)
    for e in events[:5]:
        assert e.kv is loaded.get(e.kv.key) or e.kv.key == "/k0"
    # The new /k0's prev_kv is the very object the first put's event holds.
    assert events[5].prev_kv is events[0].kv
    assert events[5].kv is loaded.get("/k0")


def test_a_delete_and_a_re_create_survive_a_round_trip() -> None:
    state = _filled()
    loaded = pickle.loads(pickle.dumps(state, protocol=5))
    _same_state(loaded, state)
    delete, create = loaded.events_since(state.revision - 1)
    assert (delete.type, delete.kv.value, delete.kv.version) == ("DELETE", b"", 0)
    assert delete.prev_kv is not None and delete.prev_kv.value == b"value 17" * 20
    assert (create.type, create.prev_kv, create.kv.version) == ("PUT", None, 1)
    assert create.kv is loaded.get("/registry/pods/default/p3")
