"""The agent's side of the Kubernetes REST API: the `ApiSession` protocol the agent core uses,
and `HttpApiSession`, its implementation over httpx against any number of masters.

Any master serves the API, so the session talks to one at a time and moves to the next when a
request cannot get an answer (connection refused or reset, timeout, 502/503/504). A running watch
is cut when a request elsewhere in the agent (the lease renewal, every few seconds) finds the
server dead, so a paused master without a TCP reset is left within one renewal timeout.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson
import trio

from controlplane._master_api import AGENT_USER_AGENT_PREFIX, PREFER_OTHER_MASTER_HEADER

from ._node import LEASE_NAMESPACE
from ._podspec import HOST_PORTS_ANNOTATION

# Per-request timeout (seconds): masters answer in milliseconds; 5 s means "not answering".
REQUEST_TIMEOUT = 5.0
# Ask the server to end each watch after about this long (randomized like client-go's 5-10 min
# so many agents do not reconnect in step); the client waits a little longer than that.
WATCH_SECONDS = (240, 300)
# Status codes that mean "this master cannot serve now, another may".
_RETRY_ELSEWHERE = {502, 503, 504}
# The User-Agent's version part (after controlplane's AGENT_USER_AGENT_PREFIX, which the masters
# recognize agents by).
_AGENT_VERSION = "0.1"

WatchHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class ApiUnavailable(Exception):
    """No master answered (all tried). The caller backs off and retries."""


class ApiError(Exception):
    """The server answered with an error Status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


class ResourceExpired(ApiError):
    """410 Gone: the watch's resourceVersion is older than the server's history; re-list."""


class ApiSession(Protocol):
    """What the agent needs from the control plane (Kubernetes REST semantics)."""

    async def list_pods(self, node_name: str) -> tuple[list[dict[str, Any]], str]: ...

    async def watch_pods(self, node_name: str, resource_version: str,
                         handle: WatchHandler) -> None:
        """Call `handle(type, object)` per event (BOOKMARK included) until the server ends
        the watch or the session moves to another master. Raises ResourceExpired,
        ApiUnavailable."""
        ...

    async def patch_pod_status(self, pod: dict[str, Any], status: dict[str, Any],
                               host_ports: str) -> None: ...

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None: ...

    async def get_node(self, name: str) -> dict[str, Any] | None: ...

    async def create_node(self, node: dict[str, Any]) -> dict[str, Any]: ...

    async def update_node_status(self, node: dict[str, Any]) -> dict[str, Any]: ...

    async def get_lease(self, name: str) -> dict[str, Any] | None: ...

    async def create_lease(self, lease: dict[str, Any]) -> dict[str, Any]: ...

    async def update_lease(self, lease: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class Backoff:
    """Exponential back-off with full jitter (AWS architecture blog's recommendation): many
    agents losing the same master do not all come back at the same instant."""

    def __init__(self, base: float = 0.2, cap: float = 10.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2 ** self.attempt)
        self.attempt = min(self.attempt + 1, 30)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


def tls_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's `verify` from ours: True/False, or the path of the cluster CA bundle."""
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA bundle {verify}: {exc}") from exc
    return verify


def _status_error(code: int, content: bytes) -> ApiError:
    """The ApiError of an error answer (a Status object, or whatever else came)."""
    try:
        body = json.loads(content)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason") or httpx.codes.get_reason_phrase(code) or "Error")
    message = str(body.get("message") or content[:200].decode(errors="replace"))
    cls = ResourceExpired if code == 410 else ApiError
    return cls(code, reason, message)


def watch_event(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(type, object) of one decoded watch event; an ERROR event (its object a Status) is
    raised as ApiError (ResourceExpired for 410: the watch must re-list)."""
    etype = str(event.get("type", ""))
    obj = event.get("object") or {}
    if etype == "ERROR":
        code = int(obj.get("code") or 500)
        cls = ResourceExpired if code == 410 else ApiError
        raise cls(code, str(obj.get("reason", "")), str(obj.get("message", "")))
    return etype, obj


class HttpApiSession:
    """ApiSession over HTTP(S) with a bearer token, failing over between `servers`."""

    def __init__(self, servers: list[str], token: str | None = None, *,
                 verify: bool | str = True, timeout: float = REQUEST_TIMEOUT,
                 client: httpx.AsyncClient | None = None) -> None:
        """`client`: share one httpx client between sessions (many hollow nodes in one
        process); it is then not closed by `aclose`."""
        if not servers:
            raise ValueError("at least one API server URL is needed")
        self.servers = [s.rstrip("/") for s in servers]
        self._index = random.randrange(len(self.servers))  # spread agents over masters
        headers = {"Accept": "application/json", "User-Agent": AGENT_USER_AGENT_PREFIX + _AGENT_VERSION}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._owns_client = client is None
        # trust_env=False: never route control traffic through a proxy from the environment.
        self._client = client or httpx.AsyncClient(verify=tls_verify(verify), timeout=timeout,
                                                   trust_env=False)
        self._timeout = timeout
        self._moved = trio.Event()  # set (and replaced) whenever the session changes server

    @property
    def server(self) -> str:
        return self.servers[self._index]

    def _move_on(self, failed_index: int, *, to: int | None = None) -> None:
        if failed_index == self._index:
            self._index = (self._index + 1) % len(self.servers) if to is None else to
            self._moved.set()
            self._moved = trio.Event()

    async def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                       body: Any = None, content_type: str = "application/json",
                       allow_404: bool = False, decode: bool = True) -> dict[str, Any] | None:
        """The answer's object (None for an allowed 404, or when `decode` is False: the
        caller has no use for it)."""
        last_error = "no server tried"
        for _ in range(len(self.servers)):
            index = self._index
            url = self.servers[index] + path
            try:
                headers = dict(self._headers)
                if body is not None:
                    headers["Content-Type"] = content_type
                code, answer_headers, content = await self._send(
                    method, url, params=params, headers=headers,
                    # orjson: the stdlib encoder was ~7 % of a hollow-node runner's CPU
                    content=None if body is None else orjson.dumps(body))
            except httpx.TransportError as exc:
                last_error = f"{self.servers[index]}: {type(exc).__name__}: {exc}"
                self._move_on(index)
                continue
            if code in _RETRY_ELSEWHERE:
                last_error = f"{self.servers[index]}: HTTP {code}"
                self._move_on(index)
                continue
            if answer_headers.get(PREFER_OTHER_MASTER_HEADER) == "true" and len(self.servers) > 1:
                # Served by the leader, which also runs the controllers: next requests (and the
                # watch, restarted at once) go to another master, picked at random so that the
                # leader's agents spread over the others; if that one cannot be reached the
                # failover above brings us back here, where we are served as before.
                self._move_on(index, to=random.choice(
                    [i for i in range(len(self.servers)) if i != index]))
            if code == 404 and allow_404:
                return None
            if code >= 400:
                raise _status_error(code, content)
            if not decode:
                return None
            return orjson.loads(content) if content else {}  # type: ignore[no-any-return]
        raise ApiUnavailable(last_error)

    async def _send(self, method: str, url: str, *, params: dict[str, Any] | None,
                    headers: dict[str, str], content: bytes | None
                    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request and its whole answer (status, headers by lower-case name, body): the
        transport, which hollow nodes replace with a leaner one (edge_agent._hollow_api).
        Raises httpx.TransportError when no answer came."""
        resp = await self._client.request(method, url, params=params, headers=headers,
                                          timeout=self._timeout, content=content)
        return resp.status_code, resp.headers, resp.content

    # ---- pods ------------------------------------------------------------------------------

    @staticmethod
    def _node_selector(node_name: str) -> str:
        return f"spec.nodeName={node_name}"

    async def list_pods(self, node_name: str) -> tuple[list[dict[str, Any]], str]:
        body = await self._request("GET", "/api/v1/pods",
                                   params={"fieldSelector": self._node_selector(node_name)})
        assert body is not None
        return list(body.get("items") or []), str(
            (body.get("metadata") or {}).get("resourceVersion", ""))

    async def watch_pods(self, node_name: str, resource_version: str,
                         handle: WatchHandler) -> None:
        index = self._index
        moved = self._moved
        seconds = random.randint(*WATCH_SECONDS)
        params = {"watch": "true", "resourceVersion": resource_version,
                  "fieldSelector": self._node_selector(node_name),
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(seconds)}
        timeout = httpx.Timeout(self._timeout, read=seconds + 30)
        failure: Exception | None = None
        # trio wraps errors raised in a nursery body in an ExceptionGroup; the error is carried
        # out of the nursery instead, so callers can catch ResourceExpired plainly.
        async with trio.open_nursery() as nursery:
            async def leave_when_moved() -> None:
                await moved.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(leave_when_moved)
            try:
                await self._consume_watch(index, params, timeout, handle)
            except (ApiError, ApiUnavailable) as exc:
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _consume_watch(self, index: int, params: dict[str, str], timeout: httpx.Timeout,
                             handle: WatchHandler) -> None:
        try:
            async with self._client.stream("GET", self.servers[index] + "/api/v1/pods",
                                           params=params, timeout=timeout,
                                           headers=self._headers) as resp:
                if resp.status_code in _RETRY_ELSEWHERE:
                    self._move_on(index)
                    raise ApiUnavailable(f"{self.servers[index]}: HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    await resp.aread()
                    raise _status_error(resp.status_code, resp.content)
                async for line in resp.aiter_lines():
                    if line.strip():
                        await handle(*watch_event(json.loads(line)))
        except httpx.TransportError as exc:
            self._move_on(index)
            raise ApiUnavailable(f"{self.servers[index]}: watch: {exc}") from exc
        except ValueError as exc:  # a torn JSON line: the connection broke mid-event
            raise ApiUnavailable(f"{self.servers[index]}: bad watch stream: {exc}") from exc

    async def patch_pod_status(self, pod: dict[str, Any], status: dict[str, Any],
                               host_ports: str) -> None:
        """Write the host-port annotation (if it changed) and then the status, in that order,
        so whoever sees the pod Ready also sees where its ports are published. The pods the
        server answers with are not decoded: the agent learns of them from its watch."""
        md = pod.get("metadata") or {}
        ns, name = md.get("namespace") or "default", md.get("name", "")
        path = f"/api/v1/namespaces/{quote(ns)}/pods/{quote(name)}"
        # metadata.uid in a patch is a precondition: never write onto a newer pod of that name.
        # No annotation and no ports are the same thing: no write for the many pods that
        # publish nothing (one Raft entry and watch event fewer per pod start).
        current = (md.get("annotations") or {}).get(HOST_PORTS_ANNOTATION)
        if current != host_ports and not (current is None and host_ports == "{}"):
            # The status subresource keeps metadata as stored, so the annotation goes first
            # through the pod itself.
            await self._request(
                "PATCH", path, body={"metadata": {"uid": md.get("uid"), "annotations": {
                    HOST_PORTS_ANNOTATION: host_ports}}},
                content_type="application/merge-patch+json", decode=False)
        await self._request("PATCH", path + "/status",
                            body={"metadata": {"uid": md.get("uid")}, "status": status},
                            content_type="application/merge-patch+json", decode=False)

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid}}
        try:
            await self._request("DELETE",
                                f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}",
                                body=body, allow_404=True)
        except ApiError as exc:
            if exc.code != 409:  # 409: a newer pod of that name exists; ours is gone
                raise

    # ---- node and lease --------------------------------------------------------------------

    async def get_node(self, name: str) -> dict[str, Any] | None:
        return await self._request("GET", f"/api/v1/nodes/{quote(name)}", allow_404=True)

    async def create_node(self, node: dict[str, Any]) -> dict[str, Any]:
        result = await self._request("POST", "/api/v1/nodes", body=node)
        assert result is not None
        return result

    async def update_node_status(self, node: dict[str, Any]) -> dict[str, Any]:
        name = node["metadata"]["name"]
        result = await self._request("PUT", f"/api/v1/nodes/{quote(name)}/status", body=node)
        assert result is not None
        return result

    def _lease_path(self, name: str = "") -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        return f"{base}/{quote(name)}" if name else base

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        return await self._request("GET", self._lease_path(name), allow_404=True)

    async def create_lease(self, lease: dict[str, Any]) -> dict[str, Any]:
        result = await self._request("POST", self._lease_path(), body=lease)
        assert result is not None
        return result

    async def update_lease(self, lease: dict[str, Any]) -> dict[str, Any]:
        result = await self._request("PUT", self._lease_path(lease["metadata"]["name"]),
                                     body=lease)
        assert result is not None
        return result

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
