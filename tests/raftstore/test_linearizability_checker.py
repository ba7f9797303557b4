"""The linearizability checker (tests/linearizability.py) must be right before it judges the store.

Classic hand-made histories, then random small histories cross-checked against a brute force
search over every order (with unknown operations either left out or placed anywhere after their
call), then generated linearizable histories of realistic size.
"""

from __future__ import annotations

import random
import time
from itertools import combinations, permutations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from linearizability import UNKNOWN, CheckAborted, check_history


def w(client: Any, key: str, value: Any, call: float, ret: float, result: Any = None) -> tuple:
    return (client, "write", (key, value), call, ret, result)


def r(client: Any, key: str, call: float, ret: float, result: Any) -> tuple:
    return (client, "read", (key,), call, ret, result)


def cas(client: Any, key: str, old: Any, new: Any, call: float, ret: float, result: Any) -> tuple:
    return (client, "cas", (key, old, new), call, ret, result)


# --- hand-made histories -----------------------------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    assert check_history([])[0]


def test_stale_read_after_completed_write_is_not_linearizable() -> None:
    # Sequentially consistent (B could be ordered first) but not linearizable: real time says no.
    ok, info = check_history([w("A", "x", 1, 0, 1), r("B", "x", 2, 3, None)])
    assert not ok and info["key"] == "x"
    assert info["longest_linearizable_prefix"] == [0] and info["cannot_linearize"] == 1


def test_read_concurrent_with_write_may_see_either_value() -> None:
    assert check_history([w("A", "x", 1, 0, 10), r("B", "x", 1, 2, None)])[0]
    assert check_history([w("A", "x", 1, 0, 10), r("B", "x", 1, 2, 1)])[0]
    assert check_history([w("A", "x", 1, 0, 10), r("B", "x", 1, 2, None), r("C", "x", 3, 4, 1)])[0]


def test_new_old_inversion_is_not_linearizable() -> None:
    # Once a read returned the new value, a later read must not return the old one.
    history = [w("A", "x", 1, 0, 10), r("B", "x", 1, 2, 1), r("C", "x", 3, 4, None)]
    ok, info = check_history(history)
    assert not ok
    assert info["longest_linearizable_prefix"] == [0, 1] and info["cannot_linearize"] == 2


def test_touching_intervals_are_concurrent() -> None:
    assert check_history([w("A", "x", 1, 0, 1), r("B", "x", 1, 2, None)])[0]


def test_read_of_a_value_never_written_is_not_linearizable() -> None:
    assert not check_history([w("A", "x", 1, 0, 1), r("B", "x", 0, 2, 7)])[0]


def test_two_concurrent_cas_cannot_both_win() -> None:
    both = [cas("A", "x", None, 1, 0, 5, True), cas("B", "x", None, 2, 1, 6, True)]
    assert not check_history(both)[0]
    one = [cas("A", "x", None, 1, 0, 5, True), cas("B", "x", None, 2, 1, 6, False)]
    assert check_history(one)[0]
    # ... and the loser's failure must be explained by the winner having gone first.
    after = [cas("A", "x", None, 1, 0, 1, False), cas("B", "x", None, 2, 2, 3, True)]
    assert not check_history(after)[0]


def test_cas_chain_and_reads() -> None:
    history = [
        w("A", "x", 0, 0, 1),
        cas("A", "x", 0, 1, 2, 3, True),
        cas("B", "x", 1, 2, 2.5, 5, True),
        r("C", "x", 4, 6, 2),
        cas("A", "x", 0, 9, 7, 8, False),
        r("B", "x", 9, 10, 2),
    ]
    assert check_history(history)[0]
    history[-1] = r("B", "x", 9, 10, 1)
    assert not check_history(history)[0]


def test_unknown_write_may_or_may_not_have_happened() -> None:
    unknown = w("A", "x", 1, 0, 1, UNKNOWN)
    assert check_history([unknown, r("B", "x", 5, 6, 1)])[0]
    assert check_history([unknown, r("B", "x", 5, 6, None)])[0]
    # It may take effect late: first absent, later present.
    assert check_history([unknown, r("B", "x", 5, 6, None), r("B", "x", 7, 8, 1)])[0]
    # But once seen, it stays (nothing else writes x).
    assert not check_history([unknown, r("B", "x", 5, 6, 1), r("B", "x", 7, 8, None)])[0]


def test_failure_report_places_unknown_ops_where_they_explain_reads() -> None:
    history = [
        w("A", "x", 1, 0, 1, UNKNOWN),
        w("A", "x", 2, 2, 3),
        r("B", "x", 5, 6, 1),  # only possible if the timed-out write landed after the second
        r("B", "x", 7, 8, 3),  # nobody wrote 3
    ]
    ok, info = check_history(history)
    assert not ok
    assert info["longest_linearizable_prefix"] == [1, 0, 2] and info["cannot_linearize"] == 3


def test_unknown_write_cannot_take_effect_before_its_call() -> None:
    assert not check_history([r("B", "x", 0, 1, 1), w("A", "x", 1, 2, 3, UNKNOWN)])[0]


def test_unknown_cas_and_unknown_read() -> None:
    history = [
        w("A", "x", 0, 0, 1),
        cas("A", "x", 0, 1, 2, 3, UNKNOWN),
        r("B", "x", 4, 5, UNKNOWN),  # constrains nothing
    ]
    assert check_history([*history, r("B", "x", 6, 7, 1)])[0]
    assert check_history([*history, r("B", "x", 6, 7, 0)])[0]
    assert not check_history([*history, r("B", "x", 6, 7, 2)])[0]


def test_keys_are_checked_independently_and_the_failing_key_is_named() -> None:
    history = [
        w("A", "x", 1, 0, 1),
        w("A", "y", 1, 0, 1),
        r("B", "x", 2, 3, 1),
        r("B", "y", 2, 3, None),
    ]
    ok, info = check_history(history)
    assert not ok and info["key"] == "y" and info["cannot_linearize"] in (1, 3)


def test_initial_values() -> None:
    assert check_history([r("A", "x", 0, 1, 5)], initial={"x": 5})[0]
    assert not check_history([r("A", "x", 0, 1, 5)])[0]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("A", "write", ("x", 1), 0, 1), "expected"),
        (("A", "delete", ("x",), 0, 1, None), "unknown op"),
        (("A", "read", ("x", 1), 0, 1, None), "takes 1 args"),
        (("A", "read", ("x",), 2, 1, None), "before call_time"),
        (("A", "cas", ("x", 1, 2), 0, 1, "yes"), "cas result"),
    ],
)
def test_malformed_history_is_rejected_clearly(entry: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_history([entry])


def test_search_budget() -> None:
    history = [w(i, "x", i, 0, 100) for i in range(12)] + [r("R", "x", 200, 201, 99)]
    with pytest.raises(CheckAborted):
        check_history(history, max_steps=1000)


# --- cross-check against brute force -----------------------------------------------------------


def brute_force(history: list[tuple]) -> bool:
    """Try every subset of unknown ops and every order; the definition, without cleverness."""
    ops = [e for e in history if not (e[1] == "read" and e[5] == UNKNOWN)]
    known = [e for e in ops if e[5] != UNKNOWN]
    unknown = [e for e in ops if e[5] == UNKNOWN]

    def ret(e: tuple) -> float:
        return float("inf") if e[5] == UNKNOWN else e[4]

    def replay(order: tuple) -> bool:
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                if ret(b) < a[3]:  # b finished before a started, yet is ordered after it
                    return False
        regs: dict[Any, Any] = {}
        for _, kind, args, _, _, result in order:
            cur = regs.get(args[0])
            if kind == "write":
                regs[args[0]] = args[1]
            elif kind == "read":
                if result != cur:
                    return False
            else:
                swapped = cur == args[1]
                if result != UNKNOWN and result != swapped:
                    return False
                if swapped:
                    regs[args[0]] = args[2]
        return True

    for n in range(len(unknown) + 1):
        for subset in combinations(unknown, n):
            if any(replay(p) for p in permutations(known + list(subset))):
                return True
    return False


values = st.sampled_from([None, 1, 2])


@st.composite
def random_histories(draw: st.DrawFn) -> list[tuple]:
    history = []
    for i in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from(["x", "y"]))
        call = draw(st.integers(0, 8))
        ret = call + draw(st.integers(0, 4))
        kind = draw(st.sampled_from(["write", "read", "cas"]))
        maybe_unknown = draw(st.integers(0, 4)) == 0
        if kind == "write":
            entry = w(i, key, draw(st.sampled_from([1, 2])), call, ret)
        elif kind == "read":
            entry = r(i, key, call, ret, draw(values))
        else:
            entry = cas(
                i, key, draw(values), draw(st.sampled_from([1, 2])), call, ret, draw(st.booleans())
            )
        if maybe_unknown:
            entry = (*entry[:5], UNKNOWN)
        history.append(entry)
    return history


@settings(max_examples=600, deadline=None)
@given(random_histories())
def test_agrees_with_brute_force(history: list[tuple]) -> None:
    assert check_history(history)[0] == brute_force(history)


def linearizable_history(
    rng: random.Random, n_ops: int, keys: list[str], n_clients: int
) -> list[tuple]:
    """Simulate clients against one register per key: each op takes effect at a point inside its
    interval, so the history is linearizable by construction. Some writes/CAS time out (their
    effect may have happened or not) and some reads time out."""
    regs: dict[str, Any] = {}
    free_at = [0.0] * n_clients  # clients are sequential: next call after the previous return
    points = []
    for _ in range(n_ops):
        c = rng.randrange(n_clients)
        call = free_at[c] + rng.random()
        point = call + rng.random() * 3
        ret = point + rng.random() * 3
        free_at[c] = ret
        points.append((point, c, call, ret))
    points.sort()
    history = []
    for _, c, call, ret in points:
        key = rng.choice(keys)
        kind = rng.choice(["write", "read", "cas"])
        timed_out = rng.random() < 0.05
        applied = not timed_out or rng.random() < 0.5
        cur = regs.get(key)
        if kind == "write":
            value = rng.randrange(1000)
            if applied:
                regs[key] = value
            history.append(w(c, key, value, call, ret))
        elif kind == "read":
            history.append(r(c, key, call, ret, cur))
        else:
            expected = cur if rng.random() < 0.6 else rng.randrange(1000)
            new = rng.randrange(1000)
            swapped = cur == expected
            if swapped and applied:
                regs[key] = new
            history.append(cas(c, key, expected, new, call, ret, swapped))
        if timed_out:
            history[-1] = (*history[-1][:5], UNKNOWN)
    return history


def test_generated_linearizable_histories_pass_and_corrupted_ones_fail() -> None:
    rng = random.Random(1234)
    for _ in range(40):
        small = linearizable_history(rng, 6, ["x", "y"], 3)
        assert check_history(small)[0] and brute_force(small)
        history = linearizable_history(rng, 60, ["x", "y"], 4)
        assert check_history(history)[0]
        # A read that returns a value nobody wrote can never be linearized.
        reads = [i for i, e in enumerate(history) if e[1] == "read" and e[5] != UNKNOWN]
        if reads:
            bad = list(history)
            i = rng.choice(reads)
            bad[i] = (*bad[i][:5], -1)
            assert not check_history(bad)[0]


def test_large_history_is_checked_quickly() -> None:
    rng = random.Random(7)
    history = linearizable_history(rng, 3000, ["a", "b", "c"], 8)
    started = time.monotonic()
    ok, info = check_history(history)
    elapsed = time.monotonic() - started
    assert ok, info
    assert elapsed < 20, f"checking 3000 operations took {elapsed:.1f} s"
    # Corrupt one read in the middle with a value never written: must be caught.
    i = next(i for i in range(1500, 3000) if history[i][1] == "read" and history[i][5] != UNKNOWN)
    bad = list(history)
    bad[i] = (*bad[i][:5], -1)
    ok, info = check_history(bad)
    assert not ok and info["key"] == bad[i][2][0]
