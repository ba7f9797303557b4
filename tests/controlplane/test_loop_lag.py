"""The master's event-loop lag probe sees a blocked loop (and nothing when it is not)."""

from __future__ import annotations

import gc
import logging
import time

import pytest
import trio

from controlplane.master import LoopLag, _SlowSteps


async def test_a_blocked_loop_is_measured() -> None:
    lag = LoopLag()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lag.serve)
        await trio.sleep(0.2)  # the probe runs a few rounds on an idle loop
        quiet = lag.max_s
        time.sleep(0.25)  # hold the loop, as a long synchronous step would
        with trio.fail_after(5):
            while not lag.stalls:  # the probe wakes (late) and records the stall
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert quiet < 0.1
    assert lag.max_s >= 0.2
    assert lag.stalls == 1
    assert lag.as_dict()["maxStallMs"] >= 200


async def test_slow_steps_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def hog() -> None:
        await trio.sleep(0)
        time.sleep(0.08)  # one step that holds the loop
        await trio.sleep(0)

    instrument = _SlowSteps(0.05)
    trio.lowlevel.add_instrument(instrument)
    try:
        with caplog.at_level(logging.INFO, logger="controlplane.master"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hog, name="the-hog")
    finally:
        trio.lowlevel.remove_instrument(instrument)
    lines = [r.getMessage() for r in caplog.records if "slow task step" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "in the-hog (at test_loop_lag.py:" in lines[0]
    assert int(lines[0].split("step: ")[1].split(" ms")[0]) >= 80


async def test_garbage_collections_are_counted() -> None:
    lag = LoopLag()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lag.serve)
        with trio.fail_after(5):
            while lag._on_gc not in gc.callbacks:  # the probe has installed its collector callback
                await trio.sleep(0)
        before = lag.as_dict()
        gc.collect(1)
        gc.collect()
        after = lag.as_dict()
        nursery.cancel_scope.cancel()
    assert after["gcCollections"][1] == before["gcCollections"][1] + 1
    assert after["gcCollections"][2] == before["gcCollections"][2] + 1
    assert after["gcPauseMs"] > before["gcPauseMs"]
    assert after["gcMaxPauseMs"] > 0
    assert lag._on_gc not in gc.callbacks  # removed when the probe stops
