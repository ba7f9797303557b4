"""EventRecorder: v1 Events so that `kubectl describe` tells what the control plane did.

Recording never blocks a controller: ``event()`` puts the event in a bounded buffer and a
background task writes it. Repeats of the same (object, reason, message) within the recorder's
lifetime bump ``count`` and ``lastTimestamp`` of the existing Event, as Kubernetes' aggregation;
each involved object may record a burst of 25 events, then one per 5 minutes (client-go's
spam filter).
When the buffer is full (a storm), new events are dropped: they are informational.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import trio

from controlplane.errors import ApiError

log = logging.getLogger(__name__)

# Buffered events before dropping (client-go's broadcaster keeps 1000).
QUEUE_SIZE = 1000
# Event writers: one, since what queues up while it writes goes into its next store round
# (CREATE_BATCH) and a repeat is then always seen as one series (two writers could both create
# the same series' Event from two batches).
WRITERS = 1
# New Events written in one store round (one Raft entry) by a writer: a scheduling round of
# 256 pods records 256 "Scheduled" events; one entry each was most of the leader's commits.
CREATE_BATCH = 128
# Remembered (object, reason, message) series for aggregation.
SERIES_CACHE = 4096
# client-go's EventSourceObjectSpamFilter: per involved object, a burst of 25 events, then one
# per 5 minutes. A ReplicaSet scaling up by 100 records 25 "Created pod" events, not 100 (with
# 30,000 pods those writes were a tenth of the leader's store writes).
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
# Involved objects whose spam budget is remembered (client-go keeps 4096).
SPAM_CACHE = 4096


_last_name_ns = 0


def _name_suffix() -> str:
    """Kubernetes' Event name suffix: the time in nanoseconds, hex (unique in this process: a
    repeat of the same nanosecond takes the next one). 16 random bytes from the OS per event
    (secrets.token_hex) were a third of the recorder's CPU with an event per pod."""
    global _last_name_ns
    _last_name_ns = max(time.time_ns(), _last_name_ns + 1)
    return f"{_last_name_ns:x}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, registry: Any, component: str, *, host: str = "") -> None:
        self.registry = registry
        self.component = component
        self.host = host
        self._send, self._recv = trio.open_memory_channel[dict](QUEUE_SIZE)
        self._series: dict[tuple, tuple[str, int]] = {}
        self._budgets: dict[tuple, tuple[float, float]] = {}  # object -> (tokens, when)
        self.dropped = 0
        self.filtered = 0

    def _allowed(self, involved: dict[str, str]) -> bool:
        key = (involved["kind"], involved.get("namespace", ""), involved["name"], involved["uid"])
        now = time.monotonic()
        tokens, then = self._budgets.pop(key, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - then) / SPAM_REFILL_SECONDS)
        allowed = tokens >= 1.0
        self._budgets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._budgets) > SPAM_CACHE:
            self._budgets.pop(next(iter(self._budgets)))
        return allowed

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Record an Event about ``obj`` (any API object); ``type_`` is Normal or Warning."""
        meta = obj.get("metadata") or {}
        involved = {
            "kind": obj.get("kind", ""),
            "apiVersion": obj.get("apiVersion", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if meta.get("namespace"):
            involved["namespace"] = meta["namespace"]
        if not self._allowed(involved):
            self.filtered += 1
            return
        try:
            self._send.send_nowait({"involved": involved, "type": type_, "reason": reason, "message": message})
        except trio.WouldBlock:
            self.dropped += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write buffered events; never returns unless cancelled."""
        async with trio.open_nursery() as nursery:
            for _ in range(WRITERS):
                nursery.start_soon(self._writer)
            task_status.started()

    async def _writer(self) -> None:
        async for item in self._recv:
            batch = [item]
            # what queued up meanwhile goes with it: new Events in one store write
            while len(batch) < CREATE_BATCH:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            creates: dict[tuple, dict] = {}
            for one in batch:
                try:
                    created = await self._write(one)
                except ApiError as exc:
                    log.debug("event %s not recorded: %s", one["reason"], exc)
                    continue
                if created is None:
                    continue
                series_key, body = created
                same = creates.get(series_key)
                if same is None:
                    creates[series_key] = body
                else:  # a repeat within the batch: one Event, counted twice
                    same["count"] += 1
                    same["lastTimestamp"] = body["lastTimestamp"]
            if creates:
                await self._create(list(creates.items()))

    async def _create(self, creates: list[tuple[tuple, dict]]) -> None:
        try:
            results = await self.registry.create_many(
                "events", [(body["metadata"]["namespace"], body) for _, body in creates])
        except ApiError as exc:
            log.debug("%d events not recorded: %s", len(creates), exc)
            return
        for (series_key, body), result in zip(creates, results, strict=True):
            if isinstance(result, ApiError):
                log.debug("event %s not recorded: %s", body["reason"], result)
                continue
            if len(self._series) >= SERIES_CACHE:
                self._series.pop(next(iter(self._series)))
            self._series[series_key] = (body["metadata"]["name"], body["count"])

    async def _write(self, item: dict) -> tuple[tuple, dict] | None:
        """Bump a known series' Event; else the (series, body) of a new Event to create."""
        involved = item["involved"]
        namespace = involved.get("namespace") or "default"
        series_key = (involved["kind"], namespace, involved["name"], involved["uid"], item["reason"], item["message"])
        now = _now()
        known = self._series.get(series_key)
        if known is not None:
            name, count = known
            try:
                current = await self.registry.get("events", namespace, name)
                current = {**current, "count": count + 1, "lastTimestamp": now}
                await self.registry.update("events", namespace, name, current)
                self._series[series_key] = (name, count + 1)
                return None
            except ApiError as exc:
                if exc.code != 404:
                    raise
        name = f"{involved['name']}.{_name_suffix()}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": item["reason"],
            "message": item["message"],
            "type": item["type"],
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host or self.component,
        }
        return series_key, body
