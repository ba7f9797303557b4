"""A work queue of object keys, as client-go's rate-limited workqueue.

- A key is queued at most once, however many events name it (level-triggered: the sync reads the
  latest state anyway).
- A key being processed is never handed to a second worker; if it is added meanwhile it is
  processed again once ``done``.
- ``add_rate_limited`` requeues after a per-key exponential backoff; ``forget`` resets it.
"""

from __future__ import annotations

import heapq
from collections import deque

import trio

# First retry delay after a failed sync, doubled per consecutive failure of the same key.
BASE_BACKOFF = 0.01
# Cap on the retry delay: a key that keeps failing (no quorum, a bad object) is still retried
# often enough to converge within seconds once the cause is gone.
MAX_BACKOFF = 5.0


class WorkQueue:
    def __init__(self, *, base_backoff: float = BASE_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = 0
        self._failures: dict[str, int] = {}
        self._base, self._max = base_backoff, max_backoff
        self._wakeup = trio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def _wake(self) -> None:
        self._wakeup.set()

    def add(self, key: str) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._wake()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        self._seq += 1
        heapq.heappush(self._delayed, (trio.current_time() + delay, self._seq, key))
        self._wake()

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self._max, self._base * (2**n)))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def _promote_due(self) -> float | None:
        now = trio.current_time()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self.add(key)
        return self._delayed[0][0] if self._delayed else None

    async def get(self) -> str:
        """The next key to process; the caller must call ``done(key)`` afterwards."""
        while True:
            next_due = self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._queued.discard(key)
                self._processing.add(key)
                return key
            self._wakeup = trio.Event()
            if next_due is None:
                await self._wakeup.wait()
            else:
                with trio.move_on_at(next_due):
                    await self._wakeup.wait()

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
