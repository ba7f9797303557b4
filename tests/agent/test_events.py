"""The pod syncer driven by a runtime's container events (evented PLEG), with a scripted
runtime: the simulated (hollow) runtime plus an event stream the test controls. The same paths
against the real Docker engine are in test_docker.py."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
import trio.testing

from edge_agent import (
    BackoffPolicy,
    ContainerRuntimeError,
    EventsUnsupported,
    HollowRuntime,
    PodSyncer,
)
from edge_agent._podsync import SYNC_RETRY_S

from .conftest import pod, wait_for

# Without events the syncer would relist this often; with them it must not.
FAST_RESYNC = 0.1
# With events the safety-net relist never comes within a test.
SLOW_RELIST = 600.0


class ScriptedEvents(HollowRuntime):
    """HollowRuntime whose event stream the test drives: kill() reports the exit unless told
    not to, end_stream() ends it (an engine restart), refuse makes connecting fail."""

    def __init__(self, node_name: str, *, supported: bool = True) -> None:
        super().__init__(node_name)
        self.supported = supported
        self.refuse = False
        self.lists = 0
        self.starts = 0
        self.fail_next_start: Exception | None = None
        # Set to hold a call half-way: a list returns what was there when it was called.
        self.list_gate: trio.Event | None = None
        self.start_gate: trio.Event | None = None
        self._stream: trio.MemorySendChannel[str | None] | None = None

    async def list_containers(self) -> list[Any]:
        self.lists += 1
        snapshot = await super().list_containers()
        if self.list_gate is not None:
            await self.list_gate.wait()
        return snapshot

    async def start_container(self, spec: Any) -> Any:
        self.starts += 1
        if self.start_gate is not None:
            await self.start_gate.wait()
        if self.fail_next_start is not None:
            exc, self.fail_next_start = self.fail_next_start, None
            raise exc
        return await super().start_container(spec)

    async def follow_events(self, on_connected: Callable[[], None],
                            on_event: Callable[[str], None]) -> None:
        if not self.supported:
            raise EventsUnsupported("scripted: no events")
        await trio.lowlevel.checkpoint()
        if self.refuse:
            raise ContainerRuntimeError("scripted: engine unreachable")
        send, recv = trio.open_memory_channel[str | None](100)
        self._stream = send
        on_connected()
        async with recv:
            async for cid in recv:
                if cid is None:
                    return
                on_event(cid)

    def kill(self, container_id: str, exit_code: int = 137, *, event: bool = True) -> None:
        super().kill(container_id, exit_code)
        if event and self._stream is not None:
            self._stream.send_nowait(container_id)

    def end_stream(self) -> None:
        assert self._stream is not None
        self._stream.send_nowait(None)
        self._stream = None


@contextlib.asynccontextmanager
async def syncer(runtime: ScriptedEvents, **kw: Any) -> AsyncIterator[PodSyncer]:
    s = PodSyncer(runtime, node_name=runtime.node_name, node_address="127.0.1.250",
                  resync_interval=FAST_RESYNC, relist_interval=SLOW_RELIST, **kw)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        yield s
        nursery.cancel_scope.cancel()


def running_ids(s: PodSyncer, uid: str) -> list[str]:
    return [c.id for c in s.containers.get(uid, []) if c.running]


async def start_pod(s: PodSyncer, name: str) -> tuple[str, str]:
    p = pod(name, node_name=s.node_name)
    uid = p["metadata"]["uid"]
    s.upsert(p)
    ids = await wait_for(lambda: running_ids(s, uid), 5, f"{name} running")
    return uid, ids[0]


async def test_idle_node_with_events_does_not_relist():
    runtime = ScriptedEvents("ev-idle")
    async with syncer(runtime) as s:
        await wait_for(lambda: s.events_live, 5, "events stream live")
        for i in range(3):
            await start_pod(s, f"idle-{i}")
        await trio.testing.wait_all_tasks_blocked(0.05)
        lists = runtime.lists
        # An observation window in which nothing may happen: without events the syncer would
        # have relisted ~10 times in it (every FAST_RESYNC).
        await trio.sleep(10 * FAST_RESYNC)
        assert runtime.lists == lists


async def test_event_makes_the_exit_seen_at_once():
    runtime = ScriptedEvents("ev-exit")
    async with syncer(runtime) as s:
        await wait_for(lambda: s.events_live, 5, "events stream live")
        s.resync_interval = SLOW_RELIST  # only events (or deadlines) may wake it now
        uid, first = await start_pod(s, "exit")
        t0 = time.monotonic()
        runtime.kill(first)
        second = await wait_for(lambda: [c for c in running_ids(s, uid) if c != first], 5,
                                "restarted container")
        assert time.monotonic() - t0 < 1.0  # not the 600 s relist
        assert s.container_events >= 1 and second


async def test_back_off_end_wakes_the_pod_without_any_event():
    runtime = ScriptedEvents("ev-backoff")
    async with syncer(runtime, backoff=BackoffPolicy(base=0.5, cap=1.0)) as s:
        await wait_for(lambda: s.events_live, 5, "events stream live")
        s.resync_interval = SLOW_RELIST  # only events (or deadlines) may wake it now
        uid, first = await start_pod(s, "crash")
        runtime.kill(first)  # first restart: at once
        second = await wait_for(lambda: [c for c in running_ids(s, uid) if c != first], 5,
                                "first restart")
        t0 = time.monotonic()
        runtime.kill(second[0])  # second restart: after the 0.5 s back-off
        await wait_for(lambda: s.statuses.get(uid) and "waiting" in s.statuses[uid][0][
            "containerStatuses"][0]["state"], 5, "CrashLoopBackOff shown")
        events = s.container_events
        third = await wait_for(lambda: [c for c in running_ids(s, uid)
                                        if c not in (first, second[0])], 5, "second restart")
        elapsed = time.monotonic() - t0
        assert 0.4 <= elapsed < 2.0, elapsed  # the back-off's end, not the 600 s relist
        assert s.container_events == events and third  # no event woke it


async def test_failed_sync_is_retried_without_another_change():
    runtime = ScriptedEvents("ev-retry")
    runtime.fail_next_start = RuntimeError("engine hiccup")  # not a ContainerStartError
    async with syncer(runtime) as s:
        await wait_for(lambda: s.events_live, 5, "events stream live")
        s.resync_interval = SLOW_RELIST  # only events (or deadlines) may wake it now
        p = pod("retry", node_name=s.node_name)
        uid = p["metadata"]["uid"]
        t0 = time.monotonic()
        s.upsert(p)
        await wait_for(lambda: running_ids(s, uid), 5, "started on the retry")
        assert SYNC_RETRY_S * 0.9 <= time.monotonic() - t0 < SYNC_RETRY_S + 2


async def test_stream_loss_falls_back_to_relisting_and_reconnect_relists_at_once():
    runtime = ScriptedEvents("ev-reconnect")
    async with syncer(runtime) as s:
        await wait_for(lambda: s.events_live, 5, "events stream live")
        uid, first = await start_pod(s, "rc")
        # The engine restarts: the stream ends and cannot be reopened for a while.
        runtime.refuse = True
        runtime.end_stream()
        await wait_for(lambda: not s.events_live, 5, "stream seen lost")
        # An exit nobody reports is still noticed: the syncer relists every FAST_RESYNC now.
        runtime.kill(first, event=False)
        await wait_for(lambda: [c for c in running_ids(s, uid) if c != first], 5,
                       "exit noticed by relisting")
        # The engine is back: the syncer reconnects (back-off from 0.5 s) and relists at once.
        s.resync_interval = SLOW_RELIST  # from here on only the reconnect can cause a relist
        lists = runtime.lists
        runtime.refuse = False
        await wait_for(lambda: s.events_live, 10, "stream reconnected")
        assert s.events_connects == 2
        await wait_for(lambda: runtime.lists > lists, 2, "relist right after reconnecting")


async def test_runtime_without_usable_events_relists_every_resync_interval():
    runtime = ScriptedEvents("ev-none", supported=False)
    async with syncer(runtime) as s:
        uid, first = await start_pod(s, "plain")
        assert not s.events_live
        lists = runtime.lists
        runtime.kill(first)
        await wait_for(lambda: [c for c in running_ids(s, uid) if c != first], 5,
                       "exit noticed by relisting")
        await wait_for(lambda: runtime.lists >= lists + 5, 5, "relisting every 0.1 s")


async def test_new_pods_cost_no_relist_while_events_are_live():
    runtime = ScriptedEvents("ev-cheap")
    async with syncer(runtime) as s:
        await wait_for(lambda: s.events_live, 5, "events stream live")
        await trio.testing.wait_all_tasks_blocked(0.05)
        lists = runtime.lists
        for i in range(3):
            await start_pod(s, f"cheap-{i}")
        await trio.testing.wait_all_tasks_blocked(0.05)
        # Each start recorded what it started; nothing else changed: no list call needed.
        assert runtime.lists == lists
        assert all(len(cs) == 1 for cs in s.containers.values())


async def test_a_listing_older_than_a_start_does_not_start_the_pod_twice():
    """A relist in flight while a pod's container is being started does not show it; once
    the start is done, that listing must not make the pod look container-less."""
    runtime = ScriptedEvents("ev-stale")
    async with syncer(runtime) as s:
        await wait_for(lambda: s.events_live, 5, "events stream live")
        runtime.start_gate = trio.Event()
        p = pod("stale", node_name=s.node_name)
        uid = p["metadata"]["uid"]
        s.upsert(p)
        await wait_for(lambda: runtime.starts == 1, 5, "start in progress")
        # An engine event makes the syncer relist; that listing is taken now (no container
        # yet) and returned only after the start has finished.
        runtime.list_gate = trio.Event()
        lists = runtime.lists
        runtime._stream.send_nowait("unrelated")  # type: ignore[union-attr]
        await wait_for(lambda: runtime.lists > lists, 5, "relist in flight")
        runtime.start_gate.set()
        await wait_for(lambda: running_ids(s, uid), 5, "the start recorded")
        runtime.start_gate = None
        runtime.list_gate.set()
        runtime.list_gate = None
        s.wake()  # and a few more rounds, fresh listings included
        await s.wait_rounds(3)
        assert runtime.starts == 1 and len(running_ids(s, uid)) == 1
