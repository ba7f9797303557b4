"""A linearizability checker for histories of a key-value register (Wing & Gong, with Lowe's cache).

A history is a list of completed (or timed-out) operations, one tuple each::

    (client_id, op, args, call_time, return_time, result)

    op "write": args (key, value)            result: anything (ignored) or UNKNOWN
    op "read":  args (key,)                  result: the value read (None = absent) or UNKNOWN
    op "cas":   args (key, expected, new)    result: True / False or UNKNOWN

``result == UNKNOWN`` ("unknown") marks an operation that timed out: it may or may not have
taken effect, at any time after its call, so it is treated as returning at +infinity with an
unconstrained result. (A never-applied write is the same as one applied after everything else.)
An unknown read constrains nothing and is dropped.

The history is linearizable if some total order of the operations (1) respects real time: when
``a.return_time < b.call_time``, a comes before b (touching intervals count as concurrent) and
(2) replayed on a sequential register from the initial values gives every recorded result.

Keys are independent registers, so the check runs per key (linearizability is compositional:
Herlihy & Wing 1990, "locality"). For each key it runs the Wing & Gong depth-first search over
call/return events, with Lowe's memoization of (set of linearized operations, register value),
which prunes the exponential search to what is distinct (G. Lowe, "Testing for
linearizability", 2017; the same algorithm as Porcupine's).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["UNKNOWN", "CheckAborted", "check_history"]

UNKNOWN = "unknown"
# Search steps per key before giving up: ~10 s of Python; a history needing more is too big to
# judge and the caller should record a shorter one.
DEFAULT_MAX_STEPS = 20_000_000


class CheckAborted(RuntimeError):
    """The search exceeded its step budget: the answer is unknown (neither pass nor fail)."""


@dataclass(frozen=True, slots=True)
class _Op:
    index: int  # position in the caller's history, for reports
    client: Any
    kind: str
    args: tuple[Any, ...]
    call: float
    ret: float  # math.inf for an unknown outcome
    result: Any

    @property
    def known(self) -> bool:
        return self.result is not UNKNOWN


def _parse(history: Iterable[Any]) -> list[_Op]:
    ops = []
    for i, entry in enumerate(history):
        try:
            client, kind, args, call, ret, result = entry
        except (TypeError, ValueError):
            raise ValueError(
                f"history[{i}]: expected (client_id, op, args, call_time, return_time, result), "
                f"got {entry!r:.200}"
            ) from None
        args = tuple(args)
        arity = {"write": 2, "read": 1, "cas": 3}.get(kind)
        if arity is None:
            raise ValueError(f"history[{i}]: unknown op {kind!r}; expected write, read or cas")
        if len(args) != arity:
            raise ValueError(f"history[{i}]: {kind} takes {arity} args, got {args!r}")
        unknown = isinstance(result, str) and result == UNKNOWN
        if unknown:
            if kind == "read":
                continue  # a read whose answer nobody saw constrains nothing
            ret = math.inf
        elif ret is None or ret < call:
            raise ValueError(f"history[{i}]: return_time {ret!r} is before call_time {call!r}")
        if not unknown and kind == "cas" and type(result) is not bool:
            raise ValueError(f"history[{i}]: a cas result must be True, False or {UNKNOWN!r}")
        ops.append(_Op(i, client, kind, args, call, ret, UNKNOWN if unknown else result))
    return ops


def _step(value: Any, op: _Op) -> tuple[bool, Any]:
    """Apply ``op`` to a register holding ``value``: (is the recorded result possible, new value)."""
    if op.kind == "write":
        return True, op.args[1]
    if op.kind == "read":
        return op.result == value, value
    _, expected, new = op.args
    swapped = value == expected
    if op.result is not UNKNOWN and op.result != swapped:
        return False, value
    return True, new if swapped else value


def _check_key(ops: list[_Op], initial: Any, max_steps: int) -> tuple[bool, dict[str, Any]]:
    known = [op for op in ops if op.known]
    # Unknown outcomes, by call time: candidates once the search has passed their call.
    unknown = sorted((op for op in ops if not op.known), key=lambda op: op.call)
    m = len(known)
    if m == 0:
        return True, {"operations": len(ops), "steps": 0}

    # Known ops as a doubly linked list of call/return events in time order (Wing & Gong):
    # node 0 = head, 1..2m = events, 2m+1 = tail. Calls sort before returns at equal times,
    # so touching intervals count as concurrent.
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(known)]
        + [(op.ret, 1, i) for i, op in enumerate(known)]
    )
    size = 2 * m + 2
    nxt = list(range(1, size + 1))
    prv = list(range(-1, size - 1))
    is_call = [False] * size
    op_of = [0] * size
    time_of = [0.0] * size
    match = [0] * size
    for node, (t, is_ret, i) in enumerate(events, start=1):
        op_of[node] = i
        time_of[node] = t
        is_call[node] = not is_ret
    call_node = {op_of[n]: n for n in range(1, size - 1) if is_call[n]}
    for n in range(1, size - 1):
        if not is_call[n]:
            match[call_node[op_of[n]]] = n
    head = 0

    def lift(c: int) -> None:
        r = match[c]
        nxt[prv[c]] = nxt[c]
        prv[nxt[c]] = prv[c]
        nxt[prv[r]] = nxt[r]
        prv[nxt[r]] = prv[r]

    def unlift(c: int) -> None:
        r = match[c]
        nxt[prv[r]] = r
        prv[nxt[r]] = r
        nxt[prv[c]] = c
        prv[nxt[c]] = c

    def feasible(value: Any, op: _Op) -> bool:
        return _step(value, op)[0]

    def blocks(value: Any, k: _Op, pending: list[int]) -> list[tuple[Any, int, tuple[int, ...]]]:
        """Minimal runs of pending unknown ops that make known op ``k`` possible after them.

        Only needed when ``k`` is impossible at ``value``: when it is possible, a run before it
        can always be dropped or moved after it (write, read and successful CAS do not care
        what a run left behind once they are possible; a failed CAS leaves the value as it was).
        A useful run is at most one write (an earlier one would be overwritten) followed by
        successful CAS ops, and stops as soon as ``k`` is possible: anything longer is a
        superset of unknown ops, which the memo treats as worse."""
        found: list[tuple[Any, int, tuple[int, ...]]] = []

        def extend(cur: Any, used: int, run: tuple[int, ...]) -> None:
            for j in pending:
                if used >> j & 1:
                    continue
                u = unknown[j]
                if u.kind == "write":
                    if run:
                        continue
                    new = u.args[1]
                elif cur == u.args[1]:
                    new = u.args[2]
                else:
                    continue  # a CAS that fails changes nothing: it may as well never happen
                if new == cur:
                    continue
                bits = used | (1 << j)
                if feasible(new, k):
                    found.append((new, bits, (*run, j)))
                else:
                    extend(new, bits, (*run, j))

        extend(value, 0, ())
        return found

    def children(
        value: Any, done_unknown: int
    ) -> tuple[list[tuple[int, Any, int, tuple[int, ...]]], int]:
        """Next steps: (known call node, register value just before it, unknown ops run just
        before it). Known ops are the calls before the first pending return (the barrier);
        unknown ops are eligible once called by then (their return is at infinity)."""
        out: list[tuple[int, Any, int, tuple[int, ...]]] = []
        node = nxt[head]
        calls = []
        while is_call[node]:
            calls.append(node)
            node = nxt[node]
        barrier = node  # a return node (never the tail: some known op is still pending)
        pending: list[int] | None = None
        for c in calls:
            k = known[op_of[c]]
            if feasible(value, k):
                out.append((c, value, 0, ()))
                continue
            if pending is None:
                t = time_of[barrier]
                pending = []
                for j, u in enumerate(unknown):
                    if u.call > t:
                        break
                    if not done_unknown >> j & 1:
                        pending.append(j)
            for before, bits, run in blocks(value, k, pending):
                out.append((c, before, bits, run))
        return out, barrier

    # Lowe's memo, strengthened for unknown outcomes: configurations are (known ops linearized,
    # register value, unknown ops linearized). Having used fewer unknown ops is never worse
    # (they may still happen later, or never), so a configuration is skipped when one with the
    # same known set and value and a subset of its unknown set was already visited.
    seen: dict[tuple[int, Any], list[int]] = {}
    value = initial
    done_known = 0
    done_unknown = 0
    first, first_barrier = children(value, 0)
    # A frame: [children, next position, barrier node, node taken to get here, previous value,
    # previous unknown set, path length before].
    stack: list[list[Any]] = [[first, 0, first_barrier, None, None, 0, 0]]
    path: list[int] = []  # history indexes of the current linearization
    deepest: tuple[int, list[int], int] = (-1, [], first_barrier)
    steps = 0
    while stack:
        frame = stack[-1]
        options = frame[0]
        if frame[1] >= len(options):
            stack.pop()
            ref = frame[3]
            if ref is None:
                break
            done_known &= ~(1 << op_of[ref])
            unlift(ref)
            value, done_unknown = frame[4], frame[5]
            del path[frame[6] :]
            continue
        ref, before, bits, run = options[frame[1]]
        frame[1] += 1
        steps += 1
        if steps > max_steps:
            raise CheckAborted(f"gave up after {max_steps} steps on {len(ops)} operations")
        op = known[op_of[ref]]
        new_value = _step(before, op)[1]
        new_known = done_known | (1 << op_of[ref])
        if new_known == (1 << m) - 1:
            return True, {"operations": len(ops), "steps": steps}
        new_unknown = done_unknown | bits
        memo = seen.setdefault((new_known, new_value), [])
        if any(u & ~new_unknown == 0 for u in memo):
            continue
        memo.append(new_unknown)
        lift(ref)
        stack.append([None, 0, 0, ref, value, done_unknown, len(path)])
        done_known, done_unknown, value = new_known, new_unknown, new_value
        path.extend(unknown[j].index for j in run)
        path.append(op.index)
        stack[-1][0], stack[-1][2] = children(value, done_unknown)
        depth = done_known.bit_count()
        if depth > deepest[0]:
            deepest = (depth, path.copy(), stack[-1][2])  # at most m copies: depth only grows
    return False, {
        "operations": len(ops),
        "steps": steps,
        "longest_linearizable_prefix": deepest[1],
        # The op whose return came before any order could include it.
        "cannot_linearize": known[op_of[deepest[2]]].index,
    }


def check_history(
    history: Iterable[Any],
    *,
    initial: Mapping[Any, Any] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> tuple[bool, dict[str, Any]]:
    """Is ``history`` linearizable? Returns ``(ok, info)``.

    ``initial`` maps keys to their value before the history (default None = absent).
    On failure, ``info`` names the first failing ``key``, the history index of an operation that
    cannot be linearized (``cannot_linearize``) and the longest linearizable prefix found (as
    history indexes). Raises ValueError for a malformed history and CheckAborted when the search
    exceeds ``max_steps`` on one key.
    """
    initial = initial or {}
    by_key: dict[Any, list[_Op]] = defaultdict(list)
    for op in _parse(history):
        by_key[op.args[0]].append(op)
    total_steps = 0
    for key in sorted(by_key, key=repr):
        ok, info = _check_key(by_key[key], initial.get(key), max_steps)
        total_steps += info["steps"]
        if not ok:
            return False, {"key": key, **info}
    return True, {"keys": len(by_key), "steps": total_steps}
