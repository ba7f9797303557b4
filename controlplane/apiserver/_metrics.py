"""Prometheus metrics of one API server (a private CollectorRegistry per app).

``apiserver_request_total`` and ``apiserver_request_duration_seconds`` are labelled as Kubernetes'
are, so dashboards and alerts written for a kube-apiserver read them:

- ``verb``: the HTTP method, with GET split into GET (one object), LIST (a collection) and WATCH,
  a server-side-apply PATCH reported as APPLY and requests for a streaming subresource (log,
  exec, attach, portforward, proxy) as CONNECT; any other method is ``other``. (So a create is
  POST, an update PUT, a delete of one object or a collection DELETE.)
- ``resource``: the resource the URL names, ``<plural>/<subresource>`` for a subresource (where
  Kubernetes has a separate ``subresource`` label). It is the URL's even when the request is
  refused before it is routed (401 unauthenticated, 404 for a kind this server does not serve,
  400 for a bad query), as Kubernetes' request info is parsed from the path before anything
  else runs. Names of resources this server does not serve are kept to
  :data:`_MAX_UNKNOWN_RESOURCES` distinct values, later ones count as ``other``.
  An empty ``resource`` means the URL names no resource: discovery (``/api``, ``/apis/...``),
  ``/metrics``, ``/healthz``, ``/openapi/...``, ``/version`` and paths outside the API.

Unlike a kube-apiserver, requests refused by authentication (401) are counted here too
(Kubernetes counts them only in its authentication metrics, kubernetes/kubernetes#86063), so a
client with a bad or expired token shows in the same metric as everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .. import kinds
from ._routes import parse_request_info

__all__ = ["ApiMetrics", "request_verb"]

# Request latency buckets (seconds): 1 ms .. 60 s, dense where the write target (5 ms) lies.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Store commit latency: a Raft round on loopback is ~1 ms; slow disks and lost quorum go to seconds.
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Each distinct label value is a time series kept for the life of the process: URLs are chosen by
# clients (unauthenticated ones too), so names of resources not served here are bounded; dozens
# cover mistyped kinds and clients of APIs not served, a scanner's random paths end in "other".
_MAX_UNKNOWN_RESOURCES = 50
# The label value for what exceeds a bound (Kubernetes' word for verbs out of its set).
OTHER = "other"
# Kubernetes' verb label values (k8s.io/apiserver endpoints/metrics); any other method is "other".
_VERBS = frozenset({"APPLY", "CONNECT", "DELETE", "GET", "LIST", "PATCH", "POST", "PUT", "WATCH"})
# Subresources Kubernetes reports as CONNECT (long-running streams, not reads).
_CONNECT_SUBRESOURCES = frozenset({"log", "exec", "portforward", "attach", "proxy"})
# Values of ?watch= that mean true (Kubernetes' boolean query parameters).
_TRUE = frozenset({"true", "1"})


def request_verb(method: str, *, resource: bool, named: bool, watch: bool, subresource: str | None,
                 apply: bool) -> str:
    """Kubernetes' ``verb`` label: ``resource`` (the URL names a resource), ``named`` (one object)."""
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        verb = "WATCH" if watch else "LIST" if resource and not named else "GET"
    elif verb == "PATCH" and apply:
        verb = "APPLY"
    if resource and subresource in _CONNECT_SUBRESOURCES:
        verb = "CONNECT"
    return verb if verb in _VERBS else OTHER


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, *, is_leader: Callable[[], bool] | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "apiserver_request_total", "API requests by verb, resource and HTTP code",
            ["verb", "resource", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "apiserver_request_duration_seconds", "API request latency (watch: until the stream ends)",
            ["verb", "resource"], buckets=_REQUEST_BUCKETS, registry=self.registry,
        )
        self.commit = Histogram(
            "edgeplane_store_commit_duration_seconds", "Latency of store writes (Raft commit and apply)",
            buckets=_COMMIT_BUCKETS, registry=self.registry,
        )
        self.read_barrier = Histogram(
            "edgeplane_read_barrier_duration_seconds",
            "Latency of linearizable read points (ReadIndex round trip or a barrier through the log)",
            buckets=_COMMIT_BUCKETS, registry=self.registry,
        )
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._unknown_resources: set[str] = set()
        self._histograms: dict[tuple[str, str], Any] = {}
        self.watches = Gauge("apiserver_registered_watchers", "Open watch streams", registry=self.registry)
        self.leader = Gauge("edgeplane_store_is_leader", "1 if this master is the Raft leader with a quorum lease", registry=self.registry)
        if is_leader is not None:
            self.leader.set_function(lambda: 1.0 if is_leader() else 0.0)

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        # Labelled children are cached: prometheus' labels() lookup costs more than the update.
        key = (verb, resource, code)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(verb, resource, str(code))
        histogram = self._histograms.get(key[:2])
        if histogram is None:
            histogram = self._histograms[key[:2]] = self.latency.labels(verb, resource)
        counter.inc()
        histogram.observe(seconds)

    def url_labels(self, method: str, path: str, query: dict[str, str], content_type: str) -> tuple[str, str]:
        """(verb, resource) labels of a request refused before it was routed, from its URL."""
        info = parse_request_info(path)
        if info is None:
            watch = query.get("watch", "").lower() in _TRUE
            return request_verb(method, resource=False, named=False, watch=watch, subresource=None, apply=False), ""
        watch = info.watch_path or (info.name is None and query.get("watch", "").lower() in _TRUE)
        verb = request_verb(method, resource=True, named=info.name is not None, watch=watch,
                            subresource=info.subresource,
                            apply=content_type.split(";")[0].strip().lower() == "application/apply-patch+yaml")
        resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        rtype = kinds.lookup(info.group, info.version, info.resource)
        if rtype is not None and (info.subresource is None
                                  or info.subresource in {s.name for s in rtype.discovery_subresources}):
            return verb, resource
        # (a URL the server does not serve: its name is the client's choice, so bounded)
        if resource not in self._unknown_resources:
            if len(self._unknown_resources) >= _MAX_UNKNOWN_RESOURCES:
                return verb, OTHER
            self._unknown_resources.add(resource)
        return verb, resource

    def render(self) -> bytes:
        return generate_latest(self.registry)
