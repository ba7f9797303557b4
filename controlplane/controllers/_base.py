"""The worker loop every queue-driven controller shares (sample-controller's processNextWorkItem)."""

from __future__ import annotations

import logging

import trio

from controlplane.errors import ApiError

from ._queue import WorkQueue

log = logging.getLogger(__name__)

# Failures a retry can fix: conflicts (someone wrote first), no quorum, timeouts, throttling.
RETRYABLE = frozenset({409, 429, 500, 503, 504})


class QueueController:
    """Subclasses implement ``async sync(key)`` and enqueue keys from informer handlers."""

    name = "controller"

    def __init__(self) -> None:
        self.queue = WorkQueue()

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self, *, workers: int = 2, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Process keys with ``workers`` concurrent workers; never returns unless cancelled."""
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(self._worker)
            task_status.started()

    async def process_one(self) -> None:
        key = await self.queue.get()
        try:
            await self.sync(key)
            self.queue.forget(key)
        except ApiError as exc:
            if exc.code in RETRYABLE:
                log.debug("%s: sync %s: %s; retrying", self.name, key, exc)
                self.queue.add_rate_limited(key)
            else:
                # A retry cannot fix it (invalid object, forbidden): record and absorb.
                log.warning("%s: sync %s failed: %s", self.name, key, exc)
        except Exception:
            log.exception("%s: sync %s crashed; retrying", self.name, key)
            self.queue.add_rate_limited(key)
        finally:
            self.queue.done(key)

    async def _worker(self) -> None:
        while True:
            await self.process_one()
