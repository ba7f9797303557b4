"""Real endpoints for tests and benchmarks of the data plane (like ``trio.testing``).

:class:`HttpBackend` and :class:`UdpEchoBackend` are small servers on a loopback address that
answer with their own ``ip:port``, so a client can tell which endpoint a VIP sent it to.
They run on threads, so a trio test can stop one abruptly while its client loops.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterable, Sequence

import trio


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so benchmarks can measure without connect cost

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        body = self.server.identity.encode()  # type: ignore[attr-defined]
        self.server.hits += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown test output


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a benchmark's connection burst must not be refused


class HttpBackend:
    """An HTTP server on ``ip:port`` answering every GET with ``"ip:port"``."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self.identity = f"{ip}:{port}"
        self._server = _Server((ip, port), _Handler)
        self._server.identity = self.identity  # type: ignore[attr-defined]
        self._server.hits = 0  # type: ignore[attr-defined]
        # A short poll interval makes stop() take milliseconds instead of half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def hits(self) -> int:
        return self._server.hits  # type: ignore[attr-defined, no-any-return]

    def stop(self) -> None:
        """Stop answering: new connections are refused from now on. Idempotent."""
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class UdpEchoBackend:
    """A UDP server on ``ip:port`` answering each datagram with ``b"ip:port " + datagram``."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self.identity = f"{ip}:{port}"
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((ip, port))
        self._sock.settimeout(0.02)  # how long stop() may wait for the thread
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        prefix = self.identity.encode() + b" "
        while not self._stopped.is_set():
            try:
                data, peer = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self._sock.sendto(prefix + data, peer)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()


async def http_get(ip: str, port: int, *, source: str | None = None, timeout: float = 2.0) -> str:
    """GET / over a new connection (from ``source`` if given); return the body.

    Raises OSError / trio.BrokenResourceError / trio.TooSlowError when the request fails.
    """
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(ip, port, local_address=source)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected answer from {ip}:{port}: {head[:80]!r}")
    return body.decode()


async def udp_request(ip: str, port: int, payload: bytes, *, timeout: float = 1.0) -> bytes:
    """Send one datagram from a fresh socket and return the first answer."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.connect((ip, port))
        await sock.send(payload)
        with trio.fail_after(timeout):
            return await sock.recv(65536)


def service_object(
    name: str,
    cluster_ip: str | None,
    ports: Sequence[tuple[str, int, str] | tuple[str, int, str, int]],
    *,
    namespace: str = "default",
    type: str = "ClusterIP",
    affinity_timeout: int | None = None,
) -> dict:
    """A Service dict: ``ports`` are (name, port, protocol) or (name, port, protocol, nodePort)."""
    spec: dict = {
        "type": type,
        "ports": [
            {"name": p[0], "port": p[1], "protocol": p[2], **({"nodePort": p[3]} if len(p) > 3 else {})}
            for p in ports
        ],
    }
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    if affinity_timeout is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity_timeout}}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpoints_object(
    name: str,
    ready: Iterable[tuple[str, int]],
    *,
    not_ready: Iterable[tuple[str, int]] = (),
    port_name: str = "",
    protocol: str = "TCP",
    namespace: str = "default",
) -> dict:
    """An Endpoints dict with one subset per (node address, host port), as the endpoints
    controller writes them when every pod has its own host port."""
    subsets = []
    for key, group in (("addresses", ready), ("notReadyAddresses", not_ready)):
        for ip, port in group:
            subsets.append({key: [{"ip": ip}],
                            "ports": [{"name": port_name, "port": port, "protocol": protocol}]})
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace}, "subsets": subsets}
