"""Prometheus metrics of one API server (a private CollectorRegistry per app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ApiMetrics"]

# Request latency buckets (seconds): 1 ms .. 60 s, dense where the write target (5 ms) lies.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Store commit latency: a Raft round on loopback is ~1 ms; slow disks and lost quorum go to seconds.
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
