"""URL layout: which resource, namespace, name and subresource a path addresses.

Kubernetes' layout: ``/api/v1/...`` (core group) and ``/apis/<group>/<version>/...``, then
``[watch/]<plural>[/<name>[/<subresource>]]`` for cluster-scoped kinds and all-namespace lists,
``[watch/]namespaces/<ns>/<plural>[/<name>[/<subresource>]]`` for namespaced ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import errors, kinds

__all__ = ["RequestInfo", "ResourceRoute", "parse_request_info", "parse_resource_path", "split_group_version"]

# Subresources of a namespace itself: /api/v1/namespaces/<ns>/status is the namespace's status,
# not a resource named "status" in it (Kubernetes' RequestInfoFactory has the same exception).
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True, slots=True)
class ResourceRoute:
    rtype: Any
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool  # the deprecated /watch/ prefix


def split_group_version(segments: list[str]) -> tuple[str, str, list[str]] | None:
    """(group, version, rest) for /api/v1/... or /apis/<g>/<v>/...; None if not a resource path."""
    if len(segments) >= 2 and segments[0] == "api":
        return "", segments[1], segments[2:]
    if len(segments) >= 3 and segments[0] == "apis":
        return segments[1], segments[2], segments[3:]
    return None


def _unknown(path: str) -> errors.ApiError:
    return errors.ApiError(404, "NotFound", f"the server could not find the requested resource ({path})",
                           {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})


def parse_resource_path(group: str, version: str, rest: list[str], path: str) -> ResourceRoute:
    """Route a resource path; 404 Status for unknown kinds, names in the wrong scope, or extra segments."""
    watch_path = False
    if rest and rest[0] == "watch":
        watch_path = True
        rest = rest[1:]
    if not rest or any(not s for s in rest):
        raise _unknown(path)
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        inner = kinds.lookup(group, version, rest[2])
        if inner is not None and inner.namespaced:
            namespace, rest = rest[1], rest[2:]
    rtype = kinds.lookup(group, version, rest[0])
    if rtype is None:
        raise _unknown(path)
    rest = rest[1:]
    if len(rest) > 2:
        raise _unknown(path)
    name = rest[0] if rest else None
    sub = rest[1] if len(rest) == 2 else None
    if rtype.namespaced and namespace is None and name is not None:
        raise _unknown(path)  # /api/v1/pods/<name> is not a path: a namespaced name needs its namespace
    if sub is not None:
        known = {s.name for s in rtype.discovery_subresources}
        if sub not in known or watch_path:
            raise _unknown(path)
    return ResourceRoute(rtype, namespace, name, sub, watch_path)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a resource URL names, whether or not this server serves it (Kubernetes' RequestInfo)."""

    group: str
    version: str
    resource: str
    name: str | None
    subresource: str | None
    watch_path: bool


def parse_request_info(path: str) -> RequestInfo | None:
    """The resource a URL names, by its shape alone (no lookup: an unknown kind is named too), as
    Kubernetes' RequestInfoFactory reads it; None for a URL that names no resource (discovery,
    /metrics, /healthz, /openapi/..., other paths). For metrics of requests refused before routing."""
    split = split_group_version(path.strip("/").split("/"))
    if split is None:
        return None
    group, version, rest = split
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    if not rest or not rest[0]:
        return None
    if rest[0] == "namespaces" and len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        rest = rest[2:]
    return RequestInfo(group, version, rest[0], rest[1] if len(rest) > 1 and rest[1] else None,
                       rest[2] if len(rest) > 2 and rest[2] else None, watch_path)
