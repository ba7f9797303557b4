"""Serving the ASGI app with hypercorn on trio."""

from __future__ import annotations

import logging
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["serve_api"]

# Idle keep-alive connections are closed after this long (kubectl and clients reconnect cheaply).
_KEEP_ALIVE_SECONDS = 75
# Graceful shutdown: open watch streams are cut after this long.
_GRACEFUL_SECONDS = 2.0


async def serve_api(
    app: Any,
    *,
    host: str,
    port: int,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_ca_certs: str | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on host:port (TLS when a certificate is given) until cancelled.

    ``task_status.started(bound_urls)`` once listening. Returns never, unless cancelled.
    ``ssl_ca_certs`` enables client-certificate verification (node credentials, later).
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.keep_alive_timeout = _KEEP_ALIVE_SECONDS
    config.graceful_timeout = _GRACEFUL_SECONDS
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    if ssl_certfile:
        config.certfile = ssl_certfile
        config.keyfile = ssl_keyfile
    if ssl_ca_certs:
        config.ca_certs = ssl_ca_certs
    await serve(app, config, task_status=task_status, mode="asgi")
