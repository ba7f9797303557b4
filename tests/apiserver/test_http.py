"""The HTTP/1.1 layer at the byte level (RFC 9112): keep-alive, bodies, limits, malformed input.

Raw sockets, because an HTTP library would refuse to send most of these requests.
"""

from __future__ import annotations

import json

import httpx
import trio

from controlplane.apiserver import StaticTokenAuthenticator, User, _http, create_app, serve_api
from controlplane.registry import Registry
from raftstore import MemoryStore

from .conftest import ADMIN_TOKEN, Api, free_port

AUTH = f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()


async def _admin_app() -> object:
    """The API app over a fresh in-memory store, admitting the admin token."""
    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    return create_app(registry, store=store, info={},
                      authenticator=StaticTokenAuthenticator({ADMIN_TOKEN: User("admin")}))


async def exchange(api: Api, data: bytes, *, read_until_close: bool = True) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", api.port)
    async with stream:
        await stream.send_all(data)
        out = b""
        with trio.fail_after(10):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                out += chunk
                if not read_until_close and b"\r\n\r\n" in out:
                    break
    return out


async def test_keep_alive_serves_several_requests_on_one_connection(api: Api) -> None:
    request = b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"
    last = b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = await exchange(api, request * 3 + last)
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert out.count(b'"kind":"NamespaceList"') == 3


async def test_chunked_request_body_and_expect_continue(api: Api) -> None:
    body = json.dumps({"metadata": {"name": "chunky"}, "data": {"a": "b"}}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    out = await exchange(api, b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n" + AUTH
                         + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    assert out.startswith(b"HTTP/1.1 201 Created")
    stream = await trio.open_tcp_stream("127.0.0.1", api.port)
    async with stream:
        body = json.dumps({"metadata": {"name": "later"}}).encode()
        await stream.send_all(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n" + AUTH
                              + b"Content-Type: application/json\r\nExpect: 100-continue\r\nConnection: close\r\n"
                              + b"Content-Length: %d\r\n\r\n" % len(body))
        with trio.fail_after(10):
            interim = await stream.receive_some(1000)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        await stream.send_all(body)
        rest = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                rest += chunk
        assert b"201 Created" in interim + rest


async def test_oversized_declared_body_is_413_without_reading_it(api: Api) -> None:
    out = await exchange(api, b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n" + AUTH
                         + b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{")
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b'"reason":"RequestEntityTooLarge"' in out


async def test_malformed_requests(api: Api) -> None:
    cases = {
        b"GARBAGE\r\n\r\n": b"400",
        b"GET / HTTP/2.0\r\n\r\n": b"400",
        b"GET /version HTTP/1.1\r\nBad Header\r\n\r\n": b"400",
        b"POST /api/v1/namespaces HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n": b"400",
        b"POST /api/v1/namespaces HTTP/1.1\r\nContent-Length: abc\r\n\r\n": b"400",
        b"POST /api/v1/namespaces HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n": b"501",
        b"GET /version HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n": b"431",
        b"GET /%ff%fe HTTP/1.1\r\n\r\n": b"400",
    }
    for request, code in cases.items():
        out = await exchange(api, request)
        assert out.split(b" ")[1] == code, (request[:60], out[:100])


async def test_head_has_no_body(api: Api) -> None:
    out = await exchange(api, b"HEAD /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-length:" in head.lower() and body == b""


async def test_hypercorn_engine_still_serves(nursery: trio.Nursery) -> None:
    app = await _admin_app()
    port = free_port()
    await nursery.start(lambda task_status: serve_api(app, host="127.0.0.1", port=port, engine="hypercorn",
                                                      task_status=task_status))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as c:
        r = await c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "h"}})
        assert r.status_code == 201
        assert (await c.get("/api/v1/namespaces/default/configmaps/h")).json()["metadata"]["name"] == "h"
    nursery.cancel_scope.cancel()


async def test_tls_client_certificate_reaches_the_authenticator(nursery: trio.Nursery, tmp_path) -> None:
    import ssl

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from ._tls import make_client_cert, make_tls

    ca, cert, key = make_tls(tmp_path)
    client_cert, client_key = make_client_cert(tmp_path, "node-7")

    class CertAuthenticator(StaticTokenAuthenticator):
        def authenticate_certificate(self, pem: str) -> User | None:
            subject = x509.load_pem_x509_certificate(pem.encode()).subject
            cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            return User(f"system:node:{cn}", ("system:nodes",), "node")

    store = MemoryStore()
    registry = Registry(store)
    await registry.ensure_namespaces()
    seen: list[str] = []

    def authorize(user: User, *args: object) -> bool:
        seen.append(user.name)
        return True

    app = create_app(registry, store=store, info={}, authenticator=CertAuthenticator({}), authorize=authorize)
    port = free_port()
    await nursery.start(lambda task_status: serve_api(
        app, host="127.0.0.1", port=port, ssl_certfile=str(cert), ssl_keyfile=str(key), ssl_ca_certs=str(ca),
        task_status=task_status))
    context = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=context) as anon:
        assert (await anon.get("/api/v1/nodes")).status_code == 401  # no token, no certificate
    context.load_cert_chain(str(client_cert), str(client_key))
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=context) as node:
        r = await node.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "from-node"}})
        assert r.status_code == 201
    assert seen == ["system:node:node-7"]
    nursery.cancel_scope.cancel()


async def test_closed_tls_connections_are_freed_without_the_garbage_collector(
        nursery: trio.Nursery, tmp_path) -> None:
    # A master freezes long-lived objects out of the collector's way and its leader never
    # unfreezes them (raftstore._gcpolicy): a closed connection that is cyclic garbage stays in
    # memory for good there. Reference counting alone must free it.
    import gc
    import ssl

    from ._tls import make_tls

    ca, cert, key = make_tls(tmp_path)
    app = await _admin_app()
    port = free_port()
    await nursery.start(lambda task_status: serve_api(
        app, host="127.0.0.1", port=port, ssl_certfile=str(cert), ssl_keyfile=str(key), ssl_ca_certs=str(ca),
        task_status=task_status))
    context = ssl.create_default_context(cafile=str(ca))

    def server_streams() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, _http._TLSStream))

    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=context,
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as c:
                assert (await c.get("/api/v1/namespaces")).status_code == 200
        # a failed handshake (plain bytes that look like a TLS record) too
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"\x16\x03\x01\x00\x05hello")
        await stream.aclose()
        with trio.move_on_after(10):  # the server closes its side
            while server_streams():
                await trio.sleep(0.02)
        assert server_streams() == 0
    finally:
        gc.enable()
    nursery.cancel_scope.cancel()


async def test_garbage_on_the_wire_never_stops_the_server(api: Api) -> None:
    import random

    rng = random.Random(5)
    pieces = [b"GET ", b"POST ", b"/api/v1/pods", b" HTTP/1.1\r\n", b"Content-Length: ", b"9999", b"\r\n",
              b"Transfer-Encoding: chunked\r\n", b"\r\n\r\n", b"zz\r\n", b"0\r\n\r\n", b"\x00\xff", b"Expect: 100-continue\r\n"]
    for _ in range(150):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12)))
        stream = await trio.open_tcp_stream("127.0.0.1", api.port)
        async with stream:
            await stream.send_all(data)
            with trio.move_on_after(0.05):
                await stream.receive_some(65536)
    out = await exchange(api, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"ok")
