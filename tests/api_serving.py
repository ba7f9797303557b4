"""Serving an in-process API server on a free port from a test's own port range (shared by the
tests that need a real API server over loopback without a whole cluster)."""

from __future__ import annotations

from collections.abc import Iterator

import trio

from controlplane.apiserver import serve_api

# Ports tried before giving up: enough to step over the few a parallel run holds.
_ATTEMPTS = 20


async def serve_on_free_port(nursery: trio.Nursery, app: object, ports: Iterator[int]) -> str:
    """Start ``serve_api(app)`` in ``nursery`` on the next free port of ``ports``; return its URL."""
    for _ in range(_ATTEMPTS):
        port = next(ports)
        try:
            await nursery.start(lambda task_status, port=port: serve_api(
                app, host="127.0.0.1", port=port, task_status=task_status))
        except OSError:
            continue
        return f"http://127.0.0.1:{port}"
    raise RuntimeError("no free port for the API server")
