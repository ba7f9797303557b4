"""The replica processes' garbage-collector policy, each case in a fresh interpreter (the policy is
process-wide: it must not change the test runner's own collector)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import functools, gc, sys, weakref
    import trio
    from raftstore._gcpolicy import GEN0_THRESHOLD, serve_gc_policy

    LEADER = sys.argv[1] == "leader"

    class Node:
        pass

    async def main():
        heap = [{"metadata": {"name": str(i)}, "spec": [i]} for i in range(100_000)]
        a = Node(); a.self = a
        ref = weakref.ref(a)
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(
                serve_gc_policy, lambda: LEADER, freeze_interval=0.05, full_interval=0.4))
            assert gc.get_threshold()[0] == GEN0_THRESHOLD
            with trio.fail_after(10):  # the first freeze (freeze_interval 0.05)
                while gc.get_freeze_count() < 200_000:
                    await trio.sleep(0.01)
            # the heap is out of the collector's way: a full collection walks little
            walked = len(gc.get_objects())
            print("frozen", gc.get_freeze_count() >= 200_000, "walked", walked < 50_000)
            del a  # a cycle that became garbage after it was frozen
            gc.collect()
            print("seen by a full collection", ref() is None)
            if LEADER:
                await trio.sleep(0.8)  # window of two full_intervals: a leader must NOT reclaim
            else:
                with trio.move_on_after(10):  # a follower's next full_interval (0.4 s) reclaims it
                    while ref() is not None:
                        await trio.sleep(0.01)
            print("reclaimed later", ref() is None)
            nursery.cancel_scope.cancel()
        assert heap

    trio.run(main)
""")


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_gc_policy(role: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, role], capture_output=True, text=True,
                          timeout=60, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "frozen True walked True"
    assert lines[1] == "seen by a full collection False"
    # Only a follower unfreezes and reclaims cycles among frozen objects (its pause elects no one).
    assert lines[2] == f"reclaimed later {role == 'follower'}"


_FREEZE_SCRIPT = textwrap.dedent("""
    import functools, gc
    import trio
    from raftstore._gcpolicy import GEN0_THRESHOLD, GEN1_THRESHOLD, serve_gc_policy

    async def main():
        started = []
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(
                serve_gc_policy, lambda: True, freeze_interval=0.05, full_interval=3600))
            with trio.fail_after(10):  # the first freeze
                while gc.get_freeze_count() == 0:
                    await trio.sleep(0.01)
            gc.callbacks.append(lambda phase, info: phase == "start" and started.append(info["generation"]))
            await trio.sleep(0.5)  # ten policy ticks with next to nothing allocated
            print("idle freezes collected the middle generation", any(g >= 1 for g in started))
            frozen = gc.get_freeze_count()
            n = 2 * GEN0_THRESHOLD * (GEN1_THRESHOLD + 1)  # enough for automatic middle collections
            keep = [{"n": [i]} for i in range(n)]
            with trio.fail_after(10):  # the next freeze takes the promoted survivors
                while gc.get_freeze_count() < frozen + 2 * n:
                    await trio.sleep(0.01)
            print("survivors frozen", sum(g == 1 for g in started) > 0)
            nursery.cancel_scope.cancel()
        assert keep

    trio.run(main)
""")


def test_freeze_walks_only_the_young_generation() -> None:
    # A freeze used to start with a middle collection (up to ~80k objects, 50-75 ms holding every
    # master's event loop every 10 s); survivors reach the oldest generation only through the
    # collector's own middle and full collections, so only those call for a freeze.
    proc = subprocess.run([sys.executable, "-c", _FREEZE_SCRIPT], capture_output=True, text=True,
                          timeout=60, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["idle freezes collected the middle generation False",
                                        "survivors frozen True"]
