"""Free TCP ports on loopback for the benchmarks' own servers."""

from __future__ import annotations

import random
import socket


def free_port(ports: range, *, tries: int = 500) -> int:
    """A port of ``ports`` that 127.0.0.1 can bind now, picked at random (several benchmark
    processes may look at once: random picks rarely collide)."""
    for _ in range(tries):
        port = random.choice(ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")
