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
            await trio.sleep(0.8)  # two full_intervals; fixed: a leader must NOT reclaim in it
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
