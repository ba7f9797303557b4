"""Serving the ASGI app with hypercorn on trio."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ._http import serve_http

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
    engine: str = "builtin",
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on host:port (TLS when a certificate is given) until cancelled.

    ``task_status.started(bound_urls)`` once listening. Returns never, unless cancelled.
    ``ssl_ca_certs`` enables client-certificate verification (node credentials, later).
    ``engine``: "builtin" (the lean HTTP/1.1 server, see _http.py) or "hypercorn".
    """
    if engine == "builtin":
        context = None
        if ssl_certfile:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(ssl_certfile, ssl_keyfile)
            context.set_alpn_protocols(["http/1.1"])
            if ssl_ca_certs:
                context.load_verify_locations(ssl_ca_certs)
                context.verify_mode = ssl.CERT_OPTIONAL
        await serve_http(app, host=host, port=port, ssl_context=context, task_status=task_status)
        return
    if engine != "hypercorn":
        raise ValueError(f"unknown HTTP engine {engine!r}: use 'builtin' or 'hypercorn'")
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
