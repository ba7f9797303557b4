"""AES-GCM nonces for the replica's sealed channels (Raft frames, read-index datagrams)."""

from __future__ import annotations

import os
import threading

__all__ = ["Nonces"]


class Nonces:
    """12-byte nonces that never repeat under one key: a random 8-byte prefix per object and a
    4-byte counter, with a new random prefix when the counter wraps. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prefix = os.urandom(8)
        self._counter = 0

    def next(self) -> bytes:
        with self._lock:
            self._counter += 1
            if self._counter >= 2**32:
                self._prefix, self._counter = os.urandom(8), 1
            return self._prefix + self._counter.to_bytes(4, "big")
