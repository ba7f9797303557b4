"""An in-process API server on a MemoryStore, served by hypercorn on loopback (ports 22000-22999)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from bench._ports import free_port as _free_port
from controlplane.apiserver import StaticTokenAuthenticator, User, create_app, serve_api
from controlplane.registry import Registry
from raftstore import MemoryStore

from ._tls import make_tls

ADMIN_TOKEN = "admin-token-for-tests"
VIEWER_TOKEN = "viewer-token-for-tests"
# This suite's own port range, so parallel suites never collide.
PORTS = range(22000, 23000)


def free_port() -> int:
    return _free_port(PORTS, tries=200)


@dataclass
class Api:
    url: str
    port: int
    store: MemoryStore
    registry: Registry
    app: Any
    client: httpx.AsyncClient
    ca: Path | None = None

    def headers(self, token: str = ADMIN_TOKEN, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", **extra}


async def start_api(nursery: trio.Nursery, *, log_proxy: Any = None, bookmark_interval: float = 0.3,
                    history_limit: int = 100_000, tls_dir: Path | None = None) -> Api:
    """A server on a fresh MemoryStore; with ``tls_dir`` it serves HTTPS (``api.ca`` is the CA file)."""
    store = MemoryStore(history_limit=history_limit)
    registry = Registry(store)
    await nursery.start(registry.serve_watch_cache)  # as a master serves its API
    with trio.fail_after(5):
        while not registry.watch_cache.ready:  # type: ignore[union-attr]
            await trio.sleep(0.001)
    await registry.ensure_namespaces()
    auth = StaticTokenAuthenticator({
        ADMIN_TOKEN: User("admin", ("system:masters",), "admin"),
        VIEWER_TOKEN: User("viewer", (), "viewer"),
    })
    app = create_app(registry, store=store, authenticator=auth, info={}, log_proxy=log_proxy,
                     bookmark_interval=bookmark_interval)
    ca = cert = key = None
    if tls_dir is not None:
        ca, cert, key = make_tls(tls_dir)
    for _ in range(5):
        port = free_port()
        try:
            await nursery.start(lambda task_status, p=port: serve_api(
                app, host="127.0.0.1", port=p, task_status=task_status,
                ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None))
            break
        except OSError:
            continue
    url = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
    client = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30,
                               verify=ssl.create_default_context(cafile=str(ca)) if ca else True)
    return Api(url, port, store, registry, app, client, ca)


@pytest.fixture
async def api(nursery: trio.Nursery):
    server = await start_api(nursery)
    try:
        yield server
    finally:
        await server.client.aclose()
        nursery.cancel_scope.cancel()
