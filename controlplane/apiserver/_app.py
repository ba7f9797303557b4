"""The API server as a hand-written ASGI application.

No web framework: the surface is Kubernetes' fixed URL layout, and routing it by hand keeps the
per-request cost to a path split and a dict lookup (the write target is 5 ms p50 including a
Raft commit). Every request ends in exactly one of: a JSON body, a Status for an ApiError, a
stream (watch, logs), or — only for a bug — a logged Status 500 without details.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import trio
import yaml

from .. import errors, kinds
from ..codec import dumps, parse_json, parse_yaml
from ..errors import ApiError
from ..registry import Registry, WatchEvent
from ._auth import Authenticator, User, default_authorize
from ._limits import MAX_BODY_BYTES, ClientGone, read_body
from ._metrics import ApiMetrics, request_verb
from ._protobuf import MEDIA_TYPE as PROTOBUF
from ._protobuf import decode_protobuf
from ._routes import ResourceRoute, parse_resource_path, split_group_version
from ._watch import EventEncoder, stream_watch

__all__ = ["ApiApp", "create_app"]

log = logging.getLogger("controlplane.apiserver")

LogProxy = Callable[[str, str, dict[str, str]], AsyncIterator[bytes]]

# Kubernetes' default watch length when the client sets no timeoutSeconds (min-request-timeout).
_DEFAULT_WATCH_SECONDS = 1800.0
# How often a watch with allowWatchBookmarks=true gets a BOOKMARK (Kubernetes: about a minute).
_DEFAULT_BOOKMARK_SECONDS = 60.0
# Encoded objects kept for GET and LIST responses (~1-2 KiB each: ~16 MiB at most).
_JSON_CACHE_SIZE = 8192
# List items encoded between two yields to the event loop (~5-10 ms of work).
_ENCODE_SLICE = 256
# Paths anyone may read: the same as Kubernetes' system:public-info-viewer role.
_PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})

_JSON = b"application/json"
_BODY_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]
_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0", ""})


class _Request:
    __slots__ = ("method", "path", "query", "headers", "receive", "user", "warnings", "client_certs")

    def __init__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        raw_query = scope.get("query_string", b"")
        self.query = {k: v[0] for k, v in parse_qs(raw_query.decode("latin-1"), keep_blank_values=True).items()} if raw_query else {}
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.receive = receive
        tls = (scope.get("extensions") or {}).get("tls") or {}
        self.client_certs: list[str] = list(tls.get("client_cert_chain") or [])
        self.user: User | None = None
        self.warnings: list[str] = []

    def flag(self, name: str) -> bool:
        value = self.query.get(name)
        if value is None:
            return False
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise errors.bad_request(f"invalid value for {name}: {value!r} (expected true or false)")

    def integer(self, name: str) -> int | None:
        value = self.query.get(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise errors.bad_request(f"invalid value for {name}: {value!r} is not an integer") from None


class _Response:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int, body: bytes, content_type: bytes = _JSON, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    parts = value.split(";")
    params = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip()
    return parts[0].strip().lower(), params


def _negotiate(accept: str | None) -> str:
    """'json', 'table' or 'yaml' — the first acceptable entry of the Accept header; else 406."""
    if not accept:
        return "json"
    for entry in accept.split(","):
        media, params = _media_type(entry)
        if media == "application/json":
            shape = params.get("as")
            if shape is None:
                return "json"
            if shape == "Table" and params.get("g", "meta.k8s.io") == "meta.k8s.io":
                return "table"
        elif media in ("*/*", "application/*"):
            return "json"
        elif media == "application/yaml":
            return "yaml"
    raise errors.not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, "
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    )


def _encode(fmt: str, obj: Any) -> tuple[bytes, bytes]:
    if fmt == "yaml":
        return yaml.safe_dump(obj, sort_keys=False).encode(), b"application/yaml"
    return dumps(obj), _JSON


def _status_response(exc: ApiError) -> _Response:
    return _Response(exc.code, dumps(exc.status()))


def _verb_for(method: str, route: ResourceRoute, watch: bool) -> str:
    if method == "GET":
        if route.name is None:
            return "watch" if watch else "list"
        return "get"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if route.name is not None else "deletecollection"
    return method.lower()


class ApiApp:
    """The ASGI callable; build it with :func:`create_app`."""

    def __init__(
        self,
        registry: Registry,
        *,
        store: Any,
        authenticator: Authenticator,
        info: dict[str, Any],
        log_proxy: LogProxy | None = None,
        metrics_registry: Any = None,
        authorize: Callable[..., bool] = default_authorize,
        bookmark_interval: float = _DEFAULT_BOOKMARK_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.registry = registry
        self.store = store
        self.authenticator = authenticator
        self.authorize = authorize
        self.log_proxy = log_proxy
        self.bookmark_interval = bookmark_interval
        self.max_body_bytes = max_body_bytes
        self.metrics = ApiMetrics(metrics_registry, is_leader=getattr(store, "is_leader", None))
        registry.commit_observer = self.metrics.commit.observe
        registry.barrier_observer = self.metrics.read_barrier.observe
        self.encoder = EventEncoder()
        self._static = self._build_static(info)
        self._openapi_cache: dict[str, bytes] = {}
        self._json_cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        # the metric labels, set once routing knows the request's resource (see _metrics)
        labels: list[str] = []
        response: _Response | None
        request: _Request | None = None
        try:
            request = _Request(scope, receive)
            response = await self._handle(request, send, labels)
        except ApiError as exc:
            response = _status_response(exc)
        except ClientGone:
            response = None
        except Exception:
            log.exception("internal error serving %s %s", scope.get("method"), scope.get("path"))
            response = _status_response(errors.internal_error())
        if response is not None:
            headers = [(b"content-type", response.content_type), (b"cache-control", b"no-cache, private"),
                       (b"content-length", str(len(response.body)).encode())]
            headers.extend(response.headers)
            try:
                await send({"type": "http.response.start", "status": response.status, "headers": headers})
                await send({"type": "http.response.body", "body": response.body})
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            code = response.status
        else:
            code = 200
        if labels:
            verb, resource = labels
        else:
            # refused before routing (or not a resource request): labelled from the URL
            verb, resource = self.metrics.url_labels(
                scope.get("method", "GET"), scope.get("path", ""), request.query if request is not None else {},
                request.headers.get("content-type", "") if request is not None else "")
        self.metrics.observe(verb, resource, code, time.perf_counter() - started)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ routing

    async def _handle(self, request: _Request, send: Any, labels: list[str]) -> _Response | None:
        path = request.path
        if path in _PUBLIC_PATHS:
            return self._public(request)
        await self._authenticate(request)
        if path == "/metrics":
            return _Response(200, self.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8")
        static = self._static.get(path.rstrip("/") or "/")
        if static is not None:
            if request.method != "GET":
                raise errors.method_not_allowed()
            _negotiate(request.headers.get("accept"))
            return _Response(200, static)
        if path.startswith("/openapi/"):
            return self._openapi(request)
        segments = path.strip("/").split("/")
        split = split_group_version(segments)
        if split is None:
            raise errors.ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        group, version, rest = split
        route = parse_resource_path(group, version, rest, path)
        watch = route.watch_path or (request.method == "GET" and route.name is None and request.flag("watch"))
        verb = _verb_for(request.method, route, watch)
        labels[:] = [
            request_verb(request.method, resource=True, named=route.name is not None, watch=watch,
                         subresource=route.subresource,
                         apply=request.method == "PATCH"
                         and _media_type(request.headers.get("content-type", ""))[0] == "application/apply-patch+yaml"),
            route.rtype.plural + (f"/{route.subresource}" if route.subresource else ""),
        ]
        return await self._resource(request, route, verb, watch, send)

    def _public(self, request: _Request) -> _Response:
        if request.path.startswith("/version"):
            return _Response(200, self._static["/version"])
        if request.query.get("verbose") is not None:
            return _Response(200, f"[+]ping ok\n[+]store ok\n{request.path[1:]} check passed\n".encode(), b"text/plain; charset=utf-8")
        return _Response(200, b"ok", b"text/plain; charset=utf-8")

    async def _authenticate(self, request: _Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # a verified client certificate (when the authenticator understands them)
            by_cert = getattr(self.authenticator, "authenticate_certificate", None)
            if request.client_certs and by_cert is not None:
                user = by_cert(request.client_certs[0])
                if inspect.isawaitable(user):
                    user = await user
                if user is not None:
                    request.user = user
                    return
            raise errors.unauthorized()
        user = self.authenticator.authenticate(token.strip())
        if inspect.isawaitable(user):
            user = await user
        if user is None:
            raise errors.unauthorized()
        request.user = user

    async def _check_allowed(self, request: _Request, verb: str, route: ResourceRoute, obj: Any,
                             *, deferrable: bool = False) -> Any:
        """None, or with ``deferrable`` (a PUT or PATCH of one object, not its scale) the
        authorizer's check of the stored object for the registry to run (see Authorizer)."""
        assert request.user is not None
        # An authorizer may be async (it may read the stored object, e.g. a pod's node) and may
        # raise its own 403 ApiError with a more precise message.
        allowed = self.authorize(request.user, verb, route.rtype.plural, route.namespace, route.name, route.subresource, obj)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if callable(allowed):
            if deferrable:
                return allowed
            # a check this request cannot run: refuse rather than skip it
            log.error("the authorizer deferred a check of %s %s that cannot be deferred", verb, route.rtype.plural)
            raise errors.internal_error()
        if not allowed:
            target = route.rtype.plural if not route.rtype.group else f"{route.rtype.plural}.{route.rtype.group}"
            scope = f' in the namespace "{route.namespace}"' if route.namespace else " at the cluster scope"
            raise errors.ApiError(
                403, "Forbidden",
                f'{target}{" " + repr(route.name).replace(chr(39), chr(34)) if route.name else ""} is forbidden: '
                f'User "{request.user.name}" cannot {verb} resource "{route.rtype.plural}" in API group "{route.rtype.group}"{scope}',
                {"name": route.name or "", "group": route.rtype.group, "kind": route.rtype.plural},
            )

    # ------------------------------------------------------------------ bodies

    async def _body(self, request: _Request, *, patch: bool = False) -> tuple[Any, str | None]:
        """(parsed body, patch type); 413/415/400 for oversize, wrong type, malformed."""
        content_type, _ = _media_type(request.headers.get("content-type", ""))
        if patch:
            if content_type == "application/apply-patch+yaml":
                raise errors.ApiError(
                    415, "UnsupportedMediaType",
                    "server-side apply (application/apply-patch+yaml) is not supported by this server; "
                    "use client-side `kubectl apply` (without --server-side)",
                )
            kind = _PATCH_TYPES.get(content_type)
            if kind is None:
                raise errors.unsupported_media_type(content_type, list(_PATCH_TYPES))
        elif content_type not in ("", "application/json", "application/yaml", "application/x-yaml", "text/yaml", PROTOBUF):
            raise errors.unsupported_media_type(content_type, _BODY_TYPES)
        else:
            kind = None
        raw = await read_body(request.receive, request.headers, self.max_body_bytes)
        if not raw.strip():
            raise errors.bad_request("the request body is empty")
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            return parse_yaml(raw), kind
        if content_type == PROTOBUF:
            return decode_protobuf(raw), kind
        return parse_json(raw), kind

    async def _drain(self, request: _Request) -> bytes:
        return await read_body(request.receive, request.headers, self.max_body_bytes)

    def _field_validation(self, request: _Request, route: ResourceRoute, obj: Any, *, patch_type: str | None = None) -> None:
        mode = request.query.get("fieldValidation", "Warn") or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"')
        if mode == "Ignore" or not isinstance(obj, dict) or patch_type == "json":
            return
        try:
            unknown = route.rtype.unknown_fields(obj)
        except ImportError:
            return  # the object model has no schema to check against (yet)
        if patch_type is not None:
            # patch directives ($patch, $setElementOrder/..., $retainKeys) are not fields
            unknown = [p for p in unknown if "$" not in p]
        if not unknown:
            return
        messages = [f'unknown field "{p}"' for p in unknown]
        if mode == "Strict":
            raise errors.bad_request("strict decoding error: " + ", ".join(messages))
        request.warnings.extend(messages)

    def _dry_run(self, request: _Request) -> bool:
        value = request.query.get("dryRun")
        if value in (None, ""):
            return False
        if value != "All":
            raise errors.bad_request(f'Invalid dry run value "{value}": supported values: "All"')
        return True

    def _respond(self, request: _Request, status: int, obj: Any, fmt: str = "json") -> _Response:
        body, content_type = _encode(fmt, obj)
        return _Response(status, body, content_type, self._warning_headers(request))

    @staticmethod
    def _warning_headers(request: _Request) -> list[tuple[bytes, bytes]]:
        # RFC 7234 warn-text is a quoted-string: escape backslashes and quotes (Kubernetes does)
        return [
            (b"warning", ('299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"').encode("utf-8", "replace"))
            for w in request.warnings
        ]

    def _item_json(self, kv: Any) -> bytes:
        """An object's JSON, encoded once per stored version (reads and lists share it)."""
        cache_key = (kv.key, kv.mod_revision)
        body = self._json_cache.get(cache_key)
        if body is None:
            body = dumps(self.registry.decode(kv))
            self._json_cache[cache_key] = body
            if len(self._json_cache) > _JSON_CACHE_SIZE:
                self._json_cache.popitem(last=False)
        return body

    async def _items_json(self, kvs: list[Any]) -> bytes:
        """A list's items as JSON, encoded in slices with the event loop free in between (a
        30,000-pod list is ~1 s of encoding that would otherwise hold every other request). A
        list larger than a quarter of the cache reads it but does not fill it (it would evict
        the objects single reads and small lists share)."""
        encode = self._item_json if len(kvs) <= _JSON_CACHE_SIZE // 4 else self._item_json_uncached
        parts: list[bytes] = []
        for start in range(0, len(kvs), _ENCODE_SLICE):
            if start:
                await trio.lowlevel.checkpoint()
            parts.extend(map(encode, kvs[start:start + _ENCODE_SLICE]))
        return b",".join(parts)

    def _item_json_uncached(self, kv: Any) -> bytes:
        body = self._json_cache.get((kv.key, kv.mod_revision))
        return body if body is not None else dumps(self.registry.decode(kv))

    # ------------------------------------------------------------------ resources

    async def _resource(self, request: _Request, route: ResourceRoute, verb: str, watch: bool, send: Any) -> _Response | None:
        method = request.method
        sub = route.subresource
        reg = self.registry
        rtype = route.rtype
        if sub == "log":
            if method != "GET":
                raise errors.method_not_allowed()
            await self._check_allowed(request, "get", route, None)
            return await self._log(request, route, send)
        if sub in ("binding", "eviction"):
            if method != "POST":
                raise errors.method_not_allowed()
            body, _ = await self._body(request)
            await self._check_allowed(request, "create", route, body)
            assert route.name is not None
            if sub == "binding":
                await reg.bind(route.namespace or "", route.name, body)
            else:
                options = body.get("deleteOptions") if isinstance(body, dict) else None
                await self._delete_with(request, route, options if isinstance(options, dict) else {})
            return self._respond(request, 201, errors.status_success(code=201))
        if sub not in (None, "status", "scale"):
            raise errors.method_not_allowed()
        if method == "GET":
            fmt = _negotiate(request.headers.get("accept"))
            await self._check_allowed(request, verb, route, None)
            if watch:
                await self._watch(request, route, send, fmt)
                return None
            if route.name is None:
                if fmt == "json":
                    header, kvs = await reg.list_kvs(
                        rtype, route.namespace,
                        label_selector=request.query.get("labelSelector"),
                        field_selector=request.query.get("fieldSelector"),
                        limit=request.integer("limit") or 0,
                        continue_token=request.query.get("continue") or None,
                        resource_version=request.query.get("resourceVersion"),
                        resource_version_match=request.query.get("resourceVersionMatch"),
                    )
                    items = await self._items_json(kvs)
                    body = dumps(header)[:-1] + b',"items":[' + items + b"]}"
                    return _Response(200, body, _JSON, self._warning_headers(request))
                listed = await reg.list(
                    rtype, route.namespace,
                    label_selector=request.query.get("labelSelector"),
                    field_selector=request.query.get("fieldSelector"),
                    limit=request.integer("limit") or 0,
                    continue_token=request.query.get("continue") or None,
                    resource_version=request.query.get("resourceVersion"),
                    resource_version_match=request.query.get("resourceVersionMatch"),
                )
                if fmt == "table":
                    return self._respond(request, 200, self._table(request, rtype, listed["items"], listed["metadata"]))
                return self._respond(request, 200, listed, fmt)
            if sub == "scale":
                obj = await reg.get_scale(rtype, route.namespace, route.name)
                return self._respond(request, 200, obj, "json" if fmt == "table" else fmt)
            kv = await reg.get_kv(rtype, route.namespace, route.name, resource_version=request.query.get("resourceVersion"))
            if fmt == "json":
                return _Response(200, self._item_json(kv), _JSON, self._warning_headers(request))
            obj = reg.decode(kv)
            if fmt == "table" and sub is None:
                return self._respond(request, 200, self._table(request, rtype, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}))
            return self._respond(request, 200, obj, "json" if fmt == "table" else fmt)
        fmt = _negotiate(request.headers.get("accept"))
        if fmt == "table":
            fmt = "json"
        if method == "POST":
            if route.name is not None:
                raise errors.method_not_allowed()
            body, _ = await self._body(request)
            await self._check_allowed(request, "create", route, body)
            self._field_validation(request, route, body)
            obj = await reg.create(rtype, route.namespace, body, dry_run=self._dry_run(request))
            return self._respond(request, 201, obj, fmt)
        if method == "PUT":
            if route.name is None:
                raise errors.method_not_allowed()
            body, _ = await self._body(request)
            admit = await self._check_allowed(request, "update", route, body, deferrable=sub != "scale")
            self._field_validation(request, route, body)
            dry = self._dry_run(request)
            if sub == "scale":
                return self._respond(request, 200, await reg.update_scale(rtype, route.namespace, route.name, body, dry_run=dry), fmt)
            if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
                if body["metadata"].get("name") not in (None, "", route.name):
                    raise errors.bad_request(
                        f"the name of the object ({body['metadata'].get('name')}) does not match the name on the URL ({route.name})"
                    )
            obj = await reg.update(rtype, route.namespace, route.name, body, subresource=sub, dry_run=dry, admit=admit)
            return self._respond(request, 200, obj, fmt)
        if method == "PATCH":
            if route.name is None:
                raise errors.method_not_allowed()
            body, patch_type = await self._body(request, patch=True)
            admit = await self._check_allowed(request, "patch", route, body, deferrable=sub != "scale")
            if sub != "scale":
                self._field_validation(request, route, body, patch_type=patch_type)
            obj = await reg.patch(rtype, route.namespace, route.name, patch_type or "merge", body,
                                  subresource=sub, dry_run=self._dry_run(request), admit=admit)
            return self._respond(request, 200, obj, fmt)
        if method == "DELETE":
            if sub is not None:
                raise errors.method_not_allowed()
            options = await self._delete_options(request)
            await self._check_allowed(request, verb, route, options)
            if route.name is None:
                if "deletecollection" not in rtype.verbs:
                    raise errors.method_not_allowed()
                listed = await reg.deletecollection(
                    rtype, route.namespace,
                    label_selector=request.query.get("labelSelector"),
                    field_selector=request.query.get("fieldSelector"),
                    grace_period_seconds=options.get("gracePeriodSeconds"),
                    propagation_policy=options.get("propagationPolicy"),
                    dry_run=self._dry_run(request),
                )
                return self._respond(request, 200, listed, fmt)
            obj = await self._delete_with(request, route, options)
            return self._respond(request, 200, obj, fmt)
        raise errors.method_not_allowed()

    async def _delete_options(self, request: _Request) -> dict[str, Any]:
        """DeleteOptions from the body (if any) overlaid by query parameters."""
        options: dict[str, Any] = {}
        declared = request.headers.get("content-length")
        if declared not in (None, "0") or request.headers.get("transfer-encoding"):
            raw = await self._drain(request)
            if raw.strip():
                content_type, _ = _media_type(request.headers.get("content-type", "") or "application/json")
                if content_type == PROTOBUF:
                    parsed = decode_protobuf(raw)
                else:
                    parsed = parse_yaml(raw) if "yaml" in content_type else parse_json(raw)
                if not isinstance(parsed, dict):
                    raise errors.bad_request("the body of a DELETE must be a DeleteOptions object")
                options = parsed
        grace = request.integer("gracePeriodSeconds")
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        if request.query.get("propagationPolicy"):
            options["propagationPolicy"] = request.query["propagationPolicy"]
        if request.query.get("orphanDependents") is not None and "propagationPolicy" not in options:
            options["propagationPolicy"] = "Orphan" if request.flag("orphanDependents") else "Background"
        if options.get("orphanDependents") is not None and "propagationPolicy" not in options:
            options["propagationPolicy"] = "Orphan" if options["orphanDependents"] else "Background"
        grace = options.get("gracePeriodSeconds")
        if grace is not None and type(grace) is not int:
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        pre = options.get("preconditions")
        if pre is not None and not isinstance(pre, dict):
            raise errors.bad_request("preconditions must be an object")
        policy = options.get("propagationPolicy")
        if policy is not None and not isinstance(policy, str):
            raise errors.bad_request("propagationPolicy must be a string")
        return options

    async def _delete_with(self, request: _Request, route: ResourceRoute, options: dict[str, Any]) -> dict[str, Any]:
        assert route.name is not None
        grace = options.get("gracePeriodSeconds")
        if grace is not None and type(grace) is not int:
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        pre = options.get("preconditions")
        return await self.registry.delete(
            route.rtype, route.namespace, route.name,
            grace_period_seconds=grace,
            propagation_policy=options.get("propagationPolicy") or None,
            preconditions=pre if isinstance(pre, dict) else None,
            dry_run=self._dry_run(request),
        )

    def _table(self, request: _Request, rtype: Any, objs: list[dict[str, Any]], list_meta: dict[str, Any]) -> dict[str, Any]:
        include = request.query.get("includeObject") or "Metadata"
        if include not in ("None", "Metadata", "Object"):
            raise errors.bad_request(f'includeObject: Unsupported value: "{include}": supported values: "Metadata", "None", "Object"')
        table = rtype.table(objs, True)
        table["metadata"] = dict(list_meta)
        for row, obj in zip(table.get("rows") or [], objs, strict=False):
            if include == "Object":
                row["object"] = obj
            elif include == "Metadata":
                row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}
            else:
                row.pop("object", None)
        return table

    async def _watch(self, request: _Request, route: ResourceRoute, send: Any, fmt: str) -> None:
        # Argument errors are HTTP errors before the stream starts (as in Kubernetes).
        rv = request.query.get("resourceVersion")
        if rv not in (None, "", "0"):
            try:
                if int(rv) < 0:
                    raise ValueError
            except ValueError:
                raise errors.bad_request(f"invalid resourceVersion: {rv!r}") from None
        self.registry.check_selectors(route.rtype, request.query.get("labelSelector"), request.query.get("fieldSelector"))
        timeout = request.integer("timeoutSeconds")
        bookmarks = request.flag("allowWatchBookmarks")
        initial_events = request.flag("sendInitialEvents")
        if initial_events and not bookmarks:
            raise errors.invalid("ListOptions", "", [{"reason": "FieldValueForbidden", "field": "sendInitialEvents",
                                                      "message": "Forbidden: sendInitialEvents requires setting allowWatchBookmarks=true"}], "meta.k8s.io")
        render = None
        if fmt == "table":
            def render(ev: WatchEvent) -> bytes:
                table = self._table(request, route.rtype, [ev.object], {"resourceVersion": ev.object["metadata"].get("resourceVersion", "")})
                return dumps({"type": ev.type, "object": table}) + b"\n"
        elif fmt == "yaml":
            raise errors.not_acceptable("watch streams are JSON only")
        self.metrics.watches.inc()
        try:
            await stream_watch(
                send, request.receive,
                registry=self.registry, rtype=route.rtype, namespace=route.namespace,
                resource_version=rv, label_selector=request.query.get("labelSelector"),
                field_selector=request.query.get("fieldSelector"),
                timeout=float(timeout) if timeout and timeout > 0 else _DEFAULT_WATCH_SECONDS,
                bookmark_interval=self.bookmark_interval if bookmarks else None,
                encoder=self.encoder, render=render, send_initial_events=initial_events,
                headers=[(b"content-type", _JSON), (b"cache-control", b"no-cache, private")],
            )
        finally:
            self.metrics.watches.dec()

    async def _log(self, request: _Request, route: ResourceRoute, send: Any) -> _Response | None:
        assert route.name is not None
        pod = await self.registry.get(route.rtype, route.namespace, route.name)
        if self.log_proxy is None:
            raise errors.ApiError(501, "NotImplemented", "pod logs are not available: this API server has no log proxy to the node agents")
        if not (pod.get("spec") or {}).get("nodeName"):
            raise errors.bad_request(f'pod "{route.name}" is not scheduled to a node yet: it has no logs')
        stream = self.log_proxy(route.namespace or "", route.name, dict(request.query))
        iterator = stream.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            first = b""
            iterator = None  # type: ignore[assignment]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"cache-control", b"no-cache, private")]})
        try:
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            if iterator is not None:
                async with trio.open_nursery() as nursery:
                    async def until_disconnect() -> None:
                        while (await request.receive())["type"] != "http.disconnect":
                            pass
                        nursery.cancel_scope.cancel()
                    nursery.start_soon(until_disconnect)
                    async for chunk in iterator:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    nursery.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except* Exception:
            log.exception("log stream of pod %s/%s failed", route.namespace, route.name)
        return None

    # ------------------------------------------------------------------ discovery and OpenAPI

    def _build_static(self, info: dict[str, Any]) -> dict[str, bytes]:
        version = {
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-edgeplane", "gitCommit": "unknown",
            "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z", "goVersion": "python3.11",
            "compiler": "cpython", "platform": "linux/amd64",
        }
        version.update({k: v for k, v in info.items() if k in version and isinstance(v, str)})
        docs: dict[str, bytes] = {"/version": dumps(version)}
        address = str(info.get("address", ""))
        address = address.split("://", 1)[-1].rstrip("/")  # Kubernetes advertises host:port
        docs["/api"] = dumps({"kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]})
        # (no empty policy/v1 group: kubectl finds pods/eviction in /api/v1, and an empty group
        # makes `kubectl api-resources` fail)
        groups = kinds.api_groups()
        docs["/apis"] = dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for group in groups:
            docs[f"/apis/{group['name']}"] = dumps({"kind": "APIGroup", "apiVersion": "v1", **group})
            for gv in group["versions"]:
                docs[f"/apis/{gv['groupVersion']}"] = dumps({
                    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv["groupVersion"],
                    "resources": kinds.discovery_resources(group["name"], gv["version"]),
                })
        docs["/api/v1"] = dumps({"kind": "APIResourceList", "groupVersion": "v1", "resources": kinds.discovery_resources("", "v1")})
        paths = sorted(["/api", "/api/v1", "/apis", *docs, "/healthz", "/livez", "/readyz", "/metrics", "/openapi/v2", "/openapi/v3", "/version"])
        docs["/"] = dumps({"paths": sorted(set(paths))})
        return docs

    def _openapi(self, request: _Request) -> _Response:
        if request.method != "GET":
            raise errors.method_not_allowed()
        path = request.path.rstrip("/")
        accept = request.headers.get("accept") or ""
        if accept and not any(
            m in ("application/json", "*/*", "application/*") for m, _ in map(_media_type, accept.split(","))
        ):
            raise errors.not_acceptable("the OpenAPI documents are served as application/json only")
        cached = self._openapi_cache.get(path)
        if cached is None:
            try:
                from .. import openapi
            except ImportError:
                raise errors.ApiError(404, "NotFound", "the OpenAPI document is not available") from None
            if path == "/openapi/v2":
                doc = openapi.openapi_v2()
            elif path == "/openapi/v3":
                doc = openapi.openapi_v3_index()
            elif path.startswith("/openapi/v3/"):
                found = openapi.openapi_v3(path[len("/openapi/v3/"):])
                if found is None:
                    raise errors.ApiError(404, "NotFound", f"no OpenAPI document for {path}")
                doc = found
            else:
                raise errors.ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
            cached = self._openapi_cache[path] = dumps(doc)
        return _Response(200, cached)


def create_app(
    registry: Registry,
    *,
    store: Any,
    authenticator: Authenticator,
    info: dict[str, Any],
    log_proxy: LogProxy | None = None,
    metrics_registry: Any = None,
    authorize: Callable[..., bool] = default_authorize,
    bookmark_interval: float = _DEFAULT_BOOKMARK_SECONDS,
) -> ApiApp:
    """The API server ASGI app over ``registry``.

    ``info`` overrides /version fields and may carry ``address`` (advertised in /api).
    ``log_proxy(namespace, pod, query) -> async iterator of bytes`` serves ``pods/log``
    (501 without it). ``metrics_registry``: a prometheus CollectorRegistry (a new one if None).
    ``authorize(user, verb, resource, namespace, name, subresource, obj) -> bool`` (403 if False).
    """
    return ApiApp(
        registry, store=store, authenticator=authenticator, info=info, log_proxy=log_proxy,
        metrics_registry=metrics_registry, authorize=authorize, bookmark_interval=bookmark_interval,
    )
