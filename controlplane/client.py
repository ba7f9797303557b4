"""The API client every edgeplane component uses: async (trio), over all masters of a cluster.

An :class:`ApiClient` knows every master's URL (from the kubeconfig's ``edgeplane`` extension)
and sticks to one until it stops answering: connection errors, 5xx answers and dropped watch
streams move it to the next master, with exponential backoff and jitter between full rounds.
When no master answers within ``retry_timeout`` it raises :class:`ClusterUnreachable`, whose
message lists every master tried and what each said.

Retrying a write is only safe when the write cannot have been applied twice: requests that never
reached a server (connection refused), 503 answers (nothing was proposed) and idempotent verbs
(GET, PUT with a resourceVersion, DELETE) are retried; a POST or PATCH whose connection broke
mid-request raises :class:`ClusterUnreachable` with ``maybe_committed=True``, so the caller can
check, rather than silently creating an object twice.

What a master's 5xx answer says about a write:

* 503 ServiceUnavailable: **not applied**. The master had no leader or no quorum and proposed
  nothing (the store raised ``StoreUnavailable`` with ``maybe_committed=False``). Any verb is
  retried on the next master at once.
* 504 Timeout, 500, 502: **unknown**. A 504 comes after the store proposed the write and gave up
  waiting (``maybe_committed=True``): it may still commit. Idempotent verbs are retried on the
  next master; a POST or PATCH is returned to the caller (``ApiError`` with that code).

Either way the master that answered 5xx is left: the next request (this one's retry or the
caller's next one) goes to the next master, since a master cut off from the majority keeps
answering that way until it is reconnected.

Watches resume on another master from the last resourceVersion seen (every replica applies
the same log, so revisions agree), and re-list when the server answers 410 Gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import random
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from . import errors
from .kubeconfig import ClientConfig, load_kubeconfig

__all__ = [
    "ApiClient",
    "ApiError",
    "ClusterUnreachable",
    "Resource",
    "UnknownResource",
    "status_of",
]

# Loopback and LAN masters answer a TCP connect within milliseconds; a dead host should be
# skipped quickly so the next master gets the request.
CONNECT_TIMEOUT_S = 2.0
# A live master answers within its store's operation timeout (5 s; after that it says 504 itself),
# and a long answer streams steadily (this bounds the wait for each read, not the whole body):
# silence for twice that means the master is hung (SIGSTOPped, swapped out), so a read moves on.
READ_TIMEOUT_S = 10.0
# How long requests keep cycling through the masters before giving up (about ten elections).
RETRY_TIMEOUT_S = 15.0
# First pause after a round in which every master failed; doubles each round up to the cap.
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
# Ask the server to end a quiet watch after this long; the client reconnects from the last
# resourceVersion, which also notices a master that silently went away (a partition).
WATCH_TIMEOUT_S = 50
# Status codes after which another master may succeed where this one did not.
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
# Of those, the ones that mean "nothing was proposed" (safe to send any verb elsewhere).
_NOT_APPLIED_STATUSES = frozenset({503})
# Verbs whose repetition cannot apply a change twice (PUT carries a resourceVersion).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

_PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


class ApiError(errors.ApiError):
    """The server answered with a Kubernetes ``Status`` failure.

    A subclass of :class:`controlplane.errors.ApiError`, so code that runs both in-process
    (Registry) and over HTTP catches one type; ``body`` is the Status exactly as received.
    """

    def __init__(self, status: dict[str, Any]) -> None:
        code = int(status.get("code") or 0)
        reason = str(status.get("reason") or "")
        message = str(status.get("message") or reason or f"HTTP {code}")
        meta = status.get("metadata")
        super().__init__(code, reason, message, status.get("details") or None,
                         metadata=meta if isinstance(meta, dict) and meta else None)
        self.body = status

    @property
    def causes(self) -> list[dict[str, Any]]:
        """Per-field causes (``field``, ``reason``, ``message``) of a validation failure."""
        return list((self.details or {}).get("causes") or [])

    def __str__(self) -> str:
        return self.message


class ClusterUnreachable(Exception):
    """No master answered. ``attempts`` maps each server tried to the last error it gave."""

    def __init__(self, attempts: dict[str, str], *, maybe_committed: bool = False) -> None:
        self.attempts = dict(attempts)
        self.maybe_committed = maybe_committed
        lines = [f"  {server}: {error}" for server, error in self.attempts.items()]
        head = "no master could serve the request; tried:" if not maybe_committed else (
            "the connection broke during a write (it may or may not have been applied); tried:"
        )
        super().__init__("\n".join([head, *lines]))


class UnknownResource(Exception):
    """A resource name that the cluster does not serve (``kubectl``'s "doesn't have a resource type")."""


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the URL space: ``/api/v1/...`` or ``/apis/<group>/<version>/...``."""

    group: str
    version: str
    plural: str
    namespaced: bool
    kind: str = ""
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource:
                parts.append(subresource)
        return "/".join(parts)

    def names(self) -> set[str]:
        return {self.plural, self.singular, self.kind.lower(), *self.short_names} - {""}


def _static_resources() -> list[Resource]:
    """The kinds compiled into this package (controlplane.kinds), when that module exists."""
    try:
        from . import kinds  # optional: names resolve by discovery without it
    except ImportError:
        return []
    out = []
    for rt in getattr(kinds, "RESOURCES", []):
        out.append(
            Resource(
                group=rt.group,
                version=rt.version,
                plural=rt.plural,
                namespaced=bool(rt.namespaced),
                kind=rt.kind,
                singular=getattr(rt, "singular", "") or rt.kind.lower(),
                short_names=tuple(getattr(rt, "short_names", ()) or ()),
                categories=tuple(getattr(rt, "categories", ()) or ()),
            )
        )
    return out


def _match(resources: Iterable[Resource], spec: str) -> Resource | None:
    """kubectl's resource argument: ``pods``, ``pod``, ``po``, ``Pod``, ``deployments.apps``."""
    name, _, group = spec.partition(".")
    lowered = name.lower()
    version = None
    if group and "." in group:
        # deployments.v1.apps: a version before the group
        head, _, rest = group.partition(".")
        if head.startswith("v") and head[1:2].isdigit():
            version, group = head, rest
    for res in resources:
        if lowered not in res.names() and name != res.kind:
            continue
        if group and res.group != group:
            continue
        if version and res.version != version:
            continue
        return res
    return None


def _ssl_context(config: ClientConfig) -> ssl.SSLContext | bool:
    if config.insecure_skip_tls_verify:
        return False
    ctx = ssl.create_default_context(
        cadata=config.ca_data.decode() if config.ca_data is not None else None
    )
    if config.client_cert_data is not None and config.client_key_data is not None:
        # ssl can only load a certificate chain from files; they exist only while loading.
        with tempfile.NamedTemporaryFile() as cert, tempfile.NamedTemporaryFile() as key:
            cert.write(config.client_cert_data)
            cert.flush()
            key.write(config.client_key_data)
            key.flush()
            ctx.load_cert_chain(cert.name, key.name)
    return ctx


def _os_errors(exc: BaseException | None, depth: int = 0) -> list[OSError]:
    """The OSErrors under an httpx error (trio wraps several connect attempts in a group)."""
    if exc is None or depth > 8:
        return []
    found = [exc] if isinstance(exc, OSError) and exc.errno else []
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found += _os_errors(sub, depth + 1)
    return found + _os_errors(exc.__cause__ or exc.__context__, depth + 1)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    for err in _os_errors(exc):
        if err.errno == errno.ECONNREFUSED:
            return "connection refused"
        if err.strerror:
            return err.strerror.lower()
    return str(exc) or type(exc).__name__


def status_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return body
    text = response.text.strip()[:200]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": response.status_code,
        "reason": response.reason_phrase,
        "message": text or response.reason_phrase or f"HTTP {response.status_code}",
    }


class ApiClient:
    """An async client for every master of one cluster. Use ``async with`` or call :meth:`aclose`."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        retry_timeout: float = RETRY_TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        user_agent: str = "edgeplane",
    ) -> None:
        if not config.servers:
            raise ValueError("ApiClient needs at least one server")
        self.config = config
        self.servers: list[str] = list(config.servers)
        self.namespace = config.namespace
        self.retry_timeout = retry_timeout
        self._current = 0
        self._static: list[Resource] | None = None  # see _resources
        self._discovered = False
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=self._timeout,
            verify=_ssl_context(config),
            # Each master is one host; a few keep-alive connections each are plenty.
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, *, context: str | None = None, **kwargs: Any
    ) -> ApiClient:
        return cls(load_kubeconfig(path, context=context), **kwargs)

    @classmethod
    def for_servers(cls, servers: Iterable[str], *, token: str | None = None, **kwargs: Any) -> ApiClient:
        return cls(ClientConfig(servers=tuple(s.rstrip("/") for s in servers), token=token), **kwargs)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def current_server(self) -> str:
        return self.servers[self._current]

    # ------------------------------------------------------------------ transport with failover

    def _rotation(self) -> list[int]:
        n = len(self.servers)
        return [(self._current + i) % n for i in range(n)]

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        retry_timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request to the current master, failing over as the module docstring says.

        Returns the response for any status the caller should see (2xx and 4xx, and a 5xx that
        persisted on every master); raises :class:`ClusterUnreachable` when none answered.
        """
        method = method.upper()
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        params = {k: v for k, v in (params or {}).items() if v is not None}
        deadline = trio.current_time() + (
            self.retry_timeout if retry_timeout is None else retry_timeout
        )
        attempts: dict[str, str] = {}
        round_no = 0
        while True:
            for index in self._rotation():
                server = self.servers[index]
                try:
                    response = await self._http.request(
                        method, server + path, params=params, content=content, headers=headers
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                        httpx.WriteError, httpx.WriteTimeout) as exc:
                    # The request was never (fully) sent: no server can have acted on it.
                    attempts[server] = _describe(exc)
                    continue
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    attempts[server] = _describe(exc)
                    if method not in _IDEMPOTENT:
                        self._current = (index + 1) % len(self.servers)
                        raise ClusterUnreachable(attempts, maybe_committed=True) from exc
                    continue
                if response.status_code in _RETRY_STATUSES:
                    # This master could not get the request through (cut off from the majority,
                    # no leader, a store timeout): whatever happens next, the next attempt (this
                    # request's or the caller's next) goes to another master.
                    self._current = (index + 1) % len(self.servers)
                    if response.status_code in _NOT_APPLIED_STATUSES or method in _IDEMPOTENT:
                        status = status_of(response)
                        attempts[server] = f"{response.status_code} {status.get('message', '')}".strip()
                        continue
                    return response  # outcome unknown: the caller decides (ApiError 504)
                self._current = index
                return response
            round_no += 1
            now = trio.current_time()
            if now >= deadline:
                raise ClusterUnreachable(attempts)
            # Full jitter keeps many clients from retrying in lockstep after a failover.
            pause = min(BACKOFF_CAP_S, BACKOFF_BASE_S * math.pow(2, round_no - 1))
            pause *= random.uniform(0.5, 1.5)
            await trio.sleep(min(pause, max(0.0, deadline - now)))

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, *, params: dict[str, Any] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response from the current master (logs); a failure status raises
        :class:`ApiError`. No failover once the stream started: the caller decides."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.current_server + path
        try:
            async with self._http.stream(method, url, params=params,
                                         timeout=httpx.Timeout(None, connect=self._timeout.connect)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise ApiError(status_of(response))
                yield response
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise ClusterUnreachable({self.current_server: _describe(exc)}) from exc

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, then the decoded JSON body; a failure status raises :class:`ApiError`."""
        response = await self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(status_of(response))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                {"code": response.status_code, "reason": "BadResponse",
                 "message": f"{method} {path}: the server's answer is not JSON"}
            ) from exc

    # ------------------------------------------------------------------ resource names

    @property
    def _resources(self) -> list[Resource]:
        # The compiled kinds are loaded on first use: with their defaulting and validation
        # they cost ~6 MB of memory, which a client given Resource objects (the netproxy of
        # every edge agent) never needs.
        if self._static is None:
            self._static = _static_resources()
        return self._static

    @_resources.setter
    def _resources(self, value: list[Resource]) -> None:
        self._static = value

    async def discover(self) -> list[Resource]:
        """Every resource the cluster serves, from ``/api/v1`` and ``/apis`` (cached)."""
        if self._discovered:
            return self._resources
        found: list[Resource] = []
        group_versions = [("", "v1")]
        groups = await self.request_json("GET", "/apis")
        for group in (groups or {}).get("groups", []):
            preferred = (group.get("preferredVersion") or {}).get("version")
            versions = [v.get("version") for v in group.get("versions", [])]
            version = preferred or (versions[0] if versions else None)
            if version:
                group_versions.append((group["name"], version))
        for group_name, version in group_versions:
            path = f"/apis/{group_name}/{version}" if group_name else f"/api/{version}"
            body = await self.request_json("GET", path)
            for item in (body or {}).get("resources", []):
                if "/" in item.get("name", ""):
                    continue  # subresources (pods/status) are not resource types
                found.append(
                    Resource(
                        group=group_name,
                        version=version,
                        plural=item["name"],
                        namespaced=bool(item.get("namespaced")),
                        kind=item.get("kind", ""),
                        singular=item.get("singularName") or item.get("kind", "").lower(),
                        short_names=tuple(item.get("shortNames") or ()),
                        categories=tuple(item.get("categories") or ()),
                    )
                )
        self._resources = found
        self._discovered = True
        return found

    async def resource(self, spec: str | Resource) -> Resource:
        """Resolve a kubectl-style resource name (``po``, ``deployments.apps``) to a :class:`Resource`."""
        if isinstance(spec, Resource):
            return spec
        found = _match(self._resources, spec)
        if found is None and not self._discovered:
            found = _match(await self.discover(), spec)
        if found is None:
            raise UnknownResource(f'the server doesn\'t have a resource type "{spec}"')
        return found

    async def resources_in_category(self, category: str) -> list[Resource]:
        """Every resource in a category (``all`` for ``get all``), as discovery lists them."""
        resources = self._resources if self._resources else await self.discover()
        return [r for r in resources if category in r.categories]

    async def resource_for_kind(self, api_version: str, kind: str) -> Resource:
        """The resource that stores objects of ``kind`` in ``api_version`` (for ``apply -f``)."""
        group, _, version = api_version.rpartition("/")
        for attempt in range(2):
            for res in self._resources:
                if res.kind == kind and res.group == group and res.version == version:
                    return res
            if attempt == 0 and not self._discovered:
                await self.discover()
        raise UnknownResource(f'no matches for kind "{kind}" in version "{api_version}"')

    # ------------------------------------------------------------------ verbs

    def _ns(self, res: Resource, namespace: str | None) -> str | None:
        return (namespace or self.namespace) if res.namespaced else None

    async def get(
        self, resource: str | Resource, name: str, *, namespace: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        res = await self.resource(resource)
        return await self.request_json(
            "GET", res.path(self._ns(res, namespace), name),
            params={"resourceVersion": resource_version},
        )

    async def list(
        self,
        resource: str | Resource,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        res = await self.resource(resource)
        ns = None if all_namespaces else self._ns(res, namespace)
        return await self.request_json(
            "GET", res.path(ns),
            params={
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "limit": limit,
                "continue": continue_,
                "resourceVersion": resource_version,
            },
        )

    async def list_all(self, resource: str | Resource, **kwargs: Any) -> dict[str, Any]:
        """:meth:`list` following ``continue`` tokens; returns one list with every item."""
        kwargs.setdefault("limit", 500)
        body = await self.list(resource, **kwargs)
        items = list(body.get("items") or [])
        while (body.get("metadata") or {}).get("continue"):
            body = await self.list(resource, **{**kwargs, "continue_": body["metadata"]["continue"]})
            items.extend(body.get("items") or [])
        body["items"] = items
        body.setdefault("metadata", {}).pop("continue", None)
        return body

    async def create(
        self, resource: str | Resource, obj: dict[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        res = await self.resource(resource)
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return await self.request_json("POST", res.path(self._ns(res, ns)), json_body=obj)

    async def update(
        self, resource: str | Resource, obj: dict[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]:
        """PUT ``obj`` (its ``metadata.resourceVersion`` is the precondition, as in Kubernetes)."""
        res = await self.resource(resource)
        meta = obj.get("metadata") or {}
        return await self.request_json(
            "PUT", res.path(self._ns(res, meta.get("namespace")), meta.get("name"), subresource),
            json_body=obj,
        )

    async def update_status(self, resource: str | Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.update(resource, obj, subresource="status")

    async def patch(
        self,
        resource: str | Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PATCH with ``patch_type`` ``merge`` (RFC 7386), ``json`` (RFC 6902) or ``strategic``."""
        if patch_type not in _PATCH_TYPES:
            raise ValueError(f"patch_type must be one of {sorted(_PATCH_TYPES)}")
        res = await self.resource(resource)
        return await self.request_json(
            "PATCH", res.path(self._ns(res, namespace), name, subresource),
            content=json.dumps(patch).encode(),
            headers={"Content-Type": _PATCH_TYPES[patch_type]},
        )

    async def delete(
        self,
        resource: str | Resource,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        res = await self.resource(resource)
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            body["preconditions"] = preconditions
        return await self.request_json(
            "DELETE", res.path(self._ns(res, namespace), name), json_body=body
        )

    async def delete_collection(
        self,
        resource: str | Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """DELETE on the collection: every object matching the selectors (deletecollection)."""
        res = await self.resource(resource)
        return await self.request_json(
            "DELETE", res.path(self._ns(res, namespace)),
            params={"labelSelector": label_selector, "fieldSelector": field_selector},
        )

    async def evict(
        self, pod: str, *, namespace: str | None = None, grace_period_seconds: int | None = None
    ) -> dict[str, Any]:
        """POST pods/<pod>/eviction (what ``drain`` does for each pod)."""
        res = await self.resource("pods")
        ns = self._ns(res, namespace)
        body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                                "metadata": {"name": pod, "namespace": ns}}
        if grace_period_seconds is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period_seconds}
        return await self.request_json("POST", res.path(ns, pod, "eviction"), json_body=body)

    async def watch(
        self,
        resource: str | Resource,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        relist_on_expired: bool = True,
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``), for ever, across masters.

        When a stream ends or its master dies, the watch reopens on the next master from the last
        resourceVersion seen, so no event is lost or repeated. When that revision has been
        compacted (410 Gone) it re-lists and yields ``{"type": "RELISTED", "object": <list>}``:
        the caller should replace whatever it derived from earlier events with that list, then
        events continue from the list's resourceVersion. With ``relist_on_expired=False`` a 410
        raises :class:`ApiError` instead.
        """
        res = await self.resource(resource)
        ns = None if all_namespaces else self._ns(res, namespace)
        path = res.path(ns)
        rv = resource_version
        selectors = {"labelSelector": label_selector, "fieldSelector": field_selector}
        failures = 0
        attempts: dict[str, str] = {}
        last_success = trio.current_time()
        while True:
            if rv is None:
                # Without a starting point, begin from a consistent list so nothing is missed.
                listed = await self.list(res, namespace=ns, all_namespaces=ns is None,
                                         label_selector=label_selector,
                                         field_selector=field_selector)
                rv = (listed.get("metadata") or {}).get("resourceVersion")
                yield {"type": "RELISTED", "object": listed}
            server = self.current_server
            params = {
                "watch": "true",
                "resourceVersion": rv,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": WATCH_TIMEOUT_S,
                **selectors,
            }
            params = {k: v for k, v in params.items() if v is not None}
            expired = False
            try:
                timeout = httpx.Timeout(WATCH_TIMEOUT_S + 15, connect=self._timeout.connect)
                async with self._http.stream(
                    "GET", server + path, params=params, timeout=timeout
                ) as response:
                    if response.status_code == 410:
                        expired = True
                    elif response.status_code >= 400:
                        await response.aread()
                        if response.status_code not in _RETRY_STATUSES:
                            raise ApiError(status_of(response))
                        attempts[server] = f"{response.status_code}"
                        raise _StreamBroken()
                    else:
                        async for line in response.aiter_lines():
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            obj = event.get("object") or {}
                            if event.get("type") == "ERROR":
                                if int(obj.get("code") or 0) == 410:
                                    expired = True
                                    break
                                raise ApiError(obj)
                            new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                            if new_rv:
                                rv = new_rv
                            failures = 0
                            attempts.clear()
                            last_success = trio.current_time()
                            if event.get("type") != "BOOKMARK":
                                yield event
                        if not expired:
                            # A clean end of stream (timeoutSeconds): reopen on the same master.
                            continue
            except (_StreamBroken, httpx.TransportError, httpx.TimeoutException, ValueError) as exc:
                if not isinstance(exc, _StreamBroken):
                    attempts[server] = _describe(exc)
                self._current = (self._current + 1) % len(self.servers)
                failures += 1
                if trio.current_time() - last_success > self.retry_timeout and len(attempts) >= len(
                    self.servers
                ):
                    raise ClusterUnreachable(attempts) from None
                if failures % len(self.servers) == 0:
                    pause = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures // len(self.servers)))
                    await trio.sleep(pause * random.uniform(0.5, 1.5))
                continue
            if expired:
                if not relist_on_expired:
                    raise ApiError({"code": 410, "reason": "Expired",
                                    "message": f"resourceVersion {rv} is too old"})
                rv = None


class _StreamBroken(Exception):
    """A watch stream failed in a way another master may not."""
