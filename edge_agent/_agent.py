"""The edge agent process: cache recovery, pod sync, log endpoint, and -- when masters are
configured -- node registration, Lease heartbeat, the pod watch and status writes.

Start-up order is what makes a node autonomous: the cached pods are loaded and the first relist
round adopts their running containers *before* any master is contacted; the API side then only
ever refines that state. While no master answers, pods keep running and restarting per policy;
computed statuses wait in memory and are written once a master is back.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ._api import (
    ApiError,
    ApiSession,
    ApiUnavailable,
    Backoff,
    HttpApiSession,
    ResourceExpired,
)
from ._cache import PodCache
from ._logs import LogLookupError, LogRequest, serve_logs
from ._node import NodeLease, node_object, ready_condition, rfc3339
from ._plan import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, BackoffPolicy
from ._podspec import containers_of, pod_key, pod_uid
from ._podsync import DEFAULT_RESYNC_INTERVAL, PodSyncer
from ._runtime import ContainerInfo, ContainerRuntime

log = logging.getLogger("edge_agent")

# Kubernetes' node lease is 40 s renewed every 10 s against a 40 s grace period: 4 renewals per
# grace. The node controller's grace here defaults to 8 s, so renew every 2 s to keep that ratio
# (one late or lost renewal must not make a healthy node NotReady).
DEFAULT_LEASE_SECONDS = 20
DEFAULT_LEASE_RENEW = 2.0
# Fraction by which a renewal may come early (never late: the grace period is what counts).
LEASE_JITTER = 0.15
# The kubelet reports node status every 5 minutes when nothing changed (the Lease is the
# heartbeat); one minute keeps `kubectl get nodes` ages fresh at negligible cost.
DEFAULT_NODE_STATUS_INTERVAL = 60.0
# Pod status writes in flight per agent: enough that 10 pods starting together are reported
# within a few round trips, few enough that 1,000 hollow agents do not flood the masters.
STATUS_WRITE_CONCURRENCY = 4
# Label on nodes whose runtime is simulated (HollowRuntime).
HOLLOW_LABEL = "edgeplane.io/hollow"
# The kubelet's read-only/log port.
DEFAULT_LOG_PORT = 10250


@dataclass
class AgentConfig:
    node_name: str
    data_dir: str
    address: str = "127.0.0.1"
    servers: list[str] = field(default_factory=list)  # empty: no master (cache only)
    token: str | None = None
    verify: bool | str = True  # CA bundle path, or False (insecure) for the API connection
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str = "docker"  # "docker" | "hollow" (simulated)
    docker_url: str | None = None
    log_port: int | None = DEFAULT_LOG_PORT  # None: no log endpoint; 0: any free port
    log_credential: str | None = None  # default: the API token, else a random one
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    lease_renew: float = DEFAULT_LEASE_RENEW
    node_status_interval: float = DEFAULT_NODE_STATUS_INTERVAL
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    resync_interval: float = DEFAULT_RESYNC_INTERVAL
    pull_registries: list[str] | None = None  # None: any registry
    cpu: str | None = None  # capacity overrides (hollow nodes); default: this machine
    memory: str | None = None
    max_pods: int = 110
    # netproxy on this node: "auto" | "nftables" | "userspace", or None for none (hollow
    # nodes, tests of the agent alone); it needs masters to learn Services from.
    proxy_mode: str | None = None
    proxy_table: str | None = None  # default edgeplane-<node>: one table per agent


def make_runtime(config: AgentConfig) -> ContainerRuntime:
    if config.runtime == "hollow":
        from ._hollow import HollowRuntime
        return HollowRuntime(config.node_name)
    if config.runtime == "docker":
        from ._docker import DockerRuntime
        return DockerRuntime(config.node_name, base_url=config.docker_url)
    raise ValueError(f"unknown runtime {config.runtime!r} (docker or hollow)")


def _readiness(status: dict[str, Any] | None) -> tuple[object, object]:
    """(phase, Ready condition status) of a pod status: what the node controller overrides."""
    status = status or {}
    ready = next((c.get("status") for c in status.get("conditions") or []
                  if c.get("type") == "Ready"), None)
    return status.get("phase"), ready


class EdgeAgent:
    """One node's agent. Use `run_agent`; the instance is what `task_status.started` hands out
    (tests and the hollow-node runner inspect `syncer`, `log_port`, `registered`)."""

    def __init__(self, config: AgentConfig, *, runtime: ContainerRuntime | None = None,
                 session: ApiSession | None = None) -> None:
        if not config.node_name:
            raise ValueError("a node name is required")
        self.config = config
        self.runtime = runtime if runtime is not None else make_runtime(config)
        if session is None and config.servers:
            session = HttpApiSession(config.servers, config.token, verify=config.verify)
        self.session = session
        self.cache = PodCache(Path(config.data_dir) / "pods",
                              durable=not self.runtime.simulated)
        self.log_credential = (config.log_credential or config.token
                               or secrets.token_urlsafe(24))
        self.log_port: int | None = None
        self.proxy: Any = None  # the netproxy ProxyHandle once the first rules are in place
        self.syncer = PodSyncer(
            self.runtime, node_name=config.node_name, node_address=config.address,
            status_sink=self._on_status, on_finalized=self._on_finalized,
            backoff=BackoffPolicy(config.backoff_base, config.backoff_cap),
            resync_interval=config.resync_interval, pull_registries=config.pull_registries)
        self.registered = trio.Event()
        self.synced_with_master = trio.Event()  # first authoritative list applied
        self.api_connected = False
        self._pending_status: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {}
        self._pending_deletes: dict[str, dict[str, Any]] = {}
        self._writes = trio.Event()
        self.lease = NodeLease(config.node_name, config.lease_seconds, config.lease_renew)
        # Set by a process running many (hollow) nodes that renews their Leases on a lane of
        # its own (edge_agent._hollow_runner): the heartbeat loop then only registers the node
        # and refreshes its status.
        self.lease_renewed_elsewhere = False
        self._last_node_status = 0.0
        self._rv: str | None = None
        self._runtime_version: str | None = None
        # Called with (event type, pod) for every pod watch event this node receives, before
        # the agent acts on it: the scale benchmark times watch delivery with it.
        self.event_observer: Callable[[str, dict[str, Any]], None] | None = None

    # ---- top level ---------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[EdgeAgent] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Run the agent until cancelled. Started (with self) once cached pods are adopted and
        the log endpoint listens."""
        cached = await trio.to_thread.run_sync(self.cache.load)
        if cached:
            log.info("recovered %d pods from %s", len(cached), self.cache.directory)
        self.syncer.set_pods(cached)
        # With masters, containers of pods missing from the cache are left alone until the
        # masters' list says whether those pods still exist.
        self.syncer.authoritative = self.session is None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.syncer.serve)
                if self.config.log_port is not None:
                    self.log_port = await nursery.start(self._serve_logs)
                if self.session is not None:
                    nursery.start_soon(self._pods_loop)
                    nursery.start_soon(self._heartbeat_loop)
                    nursery.start_soon(self._write_loop)
                    if self.config.proxy_mode:
                        nursery.start_soon(self._run_proxy)
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                if self.session is not None:
                    await self.session.aclose()
                await self.runtime.aclose()

    async def _run_proxy(self) -> None:
        """The node's netproxy; pods and heartbeats never wait for it (nor fail with it)."""
        from netproxy import ProxyError

        from ._proxy import serve_node_proxy

        config = self.config
        try:
            async with trio.open_nursery() as nursery:
                self.proxy = await nursery.start(partial(
                    serve_node_proxy, mode=config.proxy_mode or "auto",
                    node_name=config.node_name, node_address=config.address,
                    servers=config.servers, token=config.token, verify=config.verify,
                    data_dir=config.data_dir, table=config.proxy_table))
        except ProxyError as exc:
            log.error("netproxy cannot run: %s (this node serves no Service VIPs)", exc)

    # ---- status and deletion writes ----------------------------------------------------------

    def _on_status(self, pod: dict[str, Any], status: dict[str, Any], ports: str) -> None:
        if self.session is None:
            return
        self._pending_status[pod_uid(pod)] = (pod, status, ports)
        self._writes.set()

    async def _on_finalized(self, pod: dict[str, Any]) -> None:
        uid = pod_uid(pod)
        await self.cache.remove(uid)
        self._pending_status.pop(uid, None)
        if self.session is not None:
            self._pending_deletes[uid] = pod
            self._writes.set()

    async def _write_loop(self) -> None:
        """Write pending statuses and deletions; keep them while no master answers."""
        assert self.session is not None
        backoff = Backoff(0.2, 5.0)
        while True:
            await self._writes.wait()
            self._writes = trio.Event()
            try:
                for uid, pod in list(self._pending_deletes.items()):
                    md = pod.get("metadata") or {}
                    await self.session.delete_pod(md.get("namespace") or "default",
                                                  md.get("name", ""), uid)
                    self._pending_deletes.pop(uid, None)
                await self._write_statuses()
                backoff.reset()
            except (ApiUnavailable, ApiError) as exc:
                log.debug("writes deferred: %s", exc)
                await trio.sleep(backoff.next())
                self._writes.set()

    async def _write_statuses(self) -> None:
        """Write every pending status, a few at a time: a node starting many pods at once
        reports them in a few round trips instead of one after another."""
        assert self.session is not None
        session = self.session
        failures: list[ApiUnavailable | ApiError] = []
        todo = iter(list(self._pending_status.items()))

        async def writer() -> None:
            # A few writers take the pending statuses in turn: a task per status cost a
            # hollow-node runner more than deciding what to write.
            for uid, item in todo:
                if failures:
                    return  # the master is unreachable: keep the rest for the retry
                pod, status, ports = item
                try:
                    await session.patch_pod_status(pod, status, ports)
                except ApiError as exc:
                    if exc.code not in (404, 409, 422):
                        failures.append(exc)
                        return
                    log.info("status of %s not written: %s", pod_key(pod), exc)
                except ApiUnavailable as exc:
                    failures.append(exc)
                    return
                if self._pending_status.get(uid) is item:
                    del self._pending_status[uid]

        if len(self._pending_status) == 1:
            await writer()  # the common case: one status, no nursery
        else:
            async with trio.open_nursery() as nursery:
                for _ in range(min(STATUS_WRITE_CONCURRENCY, len(self._pending_status))):
                    nursery.start_soon(writer)
        if failures:
            raise failures[0]

    # ---- pods: list + watch ------------------------------------------------------------------

    def _mine(self, pod: dict[str, Any]) -> bool:
        return (pod.get("spec") or {}).get("nodeName") == self.config.node_name

    async def _apply_list(self, pods: list[dict[str, Any]]) -> None:
        pods = [p for p in pods if self._mine(p) and pod_uid(p)]
        await self.cache.replace_all(pods)
        keep_finalizing = {uid: p for uid, p in self.syncer.desired.items()
                           if uid in self._pending_deletes}
        self.syncer.set_pods([*pods, *keep_finalizing.values()])
        self.syncer.authoritative = True
        for pod in pods:
            uid = pod_uid(pod)
            last = self.syncer.statuses.get(uid)
            if last is None or last[0] != pod.get("status"):
                self.syncer.forget_status(uid)  # bring the master's copy up to date
        self.synced_with_master.set()

    async def _on_event(self, etype: str, obj: dict[str, Any]) -> None:
        log.debug("watch: %s %s", etype, pod_key(obj))
        if self.event_observer is not None:
            self.event_observer(etype, obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._rv = str(rv)
        if etype in ("ADDED", "MODIFIED") and pod_uid(obj):
            if self._mine(obj):
                # Start first, persist after: a new pod does not wait for the disk. A crash in
                # between leaves a container of a pod the cache lacks, which is kept until the
                # masters' list says whether the pod exists.
                self.syncer.upsert(obj)
                await self.cache.put(obj)
                last = self.syncer.statuses.get(pod_uid(obj))
                if last is not None and _readiness(obj.get("status")) != _readiness(last[0]):
                    # Someone else changed what we reported (the node controller marks the pods
                    # of a node it lost NotReady): write ours again, or it stays wrong forever.
                    self.syncer.resend_status(pod_uid(obj))
        elif etype == "DELETED" and pod_uid(obj):
            self.syncer.remove(pod_uid(obj))
            await self.cache.remove(pod_uid(obj))

    async def _pods_loop(self) -> None:
        assert self.session is not None
        backoff = Backoff(0.2, 10.0)
        while True:
            try:
                if self._rv is None:
                    pods, rv = await self.session.list_pods(self.config.node_name)
                    await self._apply_list(pods)
                    self._rv = rv
                    log.info("listed %d pods for %s at resourceVersion %s", len(pods),
                             self.config.node_name, rv)
                self.api_connected = True
                await self.session.watch_pods(self.config.node_name, self._rv, self._on_event)
                backoff.reset()
            except ResourceExpired:
                self._rv = None  # history compacted past our position: re-list
            except (ApiUnavailable, ApiError) as exc:
                self.api_connected = False
                delay = backoff.next()
                log.info("pod watch: %s; retrying in %.1fs", exc, delay)
                await trio.sleep(delay)

    # ---- node registration and Lease --------------------------------------------------------

    def _node(self) -> dict[str, Any]:
        version = "docker://unknown"
        if self.runtime.scheme != "docker":
            version = f"{self.runtime.scheme}://simulated"
        labels = dict(self.config.labels)
        if self.runtime.simulated:
            labels[HOLLOW_LABEL] = "true"  # never mistaken for a node that runs containers
        return node_object(self.config.node_name, self.config.address,
                           labels=labels, cpu=self.config.cpu,
                           memory=self.config.memory, max_pods=self.config.max_pods,
                           runtime_version=self._runtime_version or version,
                           log_port=self.log_port or 0)

    async def _register(self) -> None:
        assert self.session is not None
        version_fn = getattr(self.runtime, "version", None)
        if version_fn is not None and self._runtime_version is None:
            try:
                self._runtime_version = f"docker://{await version_fn()}"
            except Exception:
                self._runtime_version = None
        node = self._node()
        existing = await self.session.get_node(self.config.node_name)
        if existing is None:
            try:
                existing = await self.session.create_node(node)
                log.info("registered node %s", self.config.node_name)
            except ApiError as exc:
                if exc.code != 409:
                    raise
                existing = await self.session.get_node(self.config.node_name)
                if existing is None:
                    raise ApiUnavailable("node vanished while registering") from exc
        self.lease.node_uid = (existing.get("metadata") or {}).get("uid")
        await self._update_node_status(existing)
        self.registered.set()

    async def _update_node_status(self, current: dict[str, Any]) -> None:
        """Write our capacity/addresses/info and a fresh Ready heartbeat onto `current`."""
        assert self.session is not None
        fresh = self._node()["status"]
        old_ready = next((c for c in (current.get("status") or {}).get("conditions") or []
                          if c.get("type") == "Ready"), None)
        now = rfc3339()
        transition = (old_ready.get("lastTransitionTime") if old_ready
                      and old_ready.get("status") == "True" else now)
        others = [c for c in (current.get("status") or {}).get("conditions") or []
                  if c.get("type") != "Ready"]
        fresh["conditions"] = [ready_condition(now, transition or now), *others]
        body = dict(current)
        body["status"] = fresh
        await self.session.update_node_status(body)
        self._last_node_status = time.monotonic()

    def _heartbeat_delay(self) -> float:
        """Seconds to the next heartbeat: the renew interval, up to 15 % early at random (nodes
        started together - a site powering up, a hollow-node runner - spread their renewals
        instead of writing in one burst). When the Lease is renewed elsewhere (hollow nodes:
        the runner's lease lane), a heartbeat only looks whether the node status is due, so
        the heartbeats up to the one at which it is due are slept through at once: the status
        is written at the same moments, with one wake-up instead of one per renew interval
        (~30 per 5 min for each of a runner's hundreds of nodes)."""
        delay = self.config.lease_renew * random.uniform(1 - LEASE_JITTER, 1)
        if self.lease_renewed_elsewhere:
            due_in = (self._last_node_status + self.config.node_status_interval
                      - time.monotonic())
            while delay < due_in + 0.001:  # (a hair past due, so the next look finds it due)
                delay += self.config.lease_renew * random.uniform(1 - LEASE_JITTER, 1)
        return delay

    async def _heartbeat_loop(self) -> None:
        assert self.session is not None
        backoff = Backoff(0.2, self.config.lease_renew)
        failed = False
        while True:
            try:
                if not self.registered.is_set():
                    await self._register()
                if not self.lease_renewed_elsewhere:
                    await self.lease.renew(self.session)
                due = time.monotonic() - self._last_node_status >= self.config.node_status_interval
                if failed or due:
                    # After an outage the node controller may have marked us NotReady/Unknown.
                    current = await self.session.get_node(self.config.node_name)
                    if current is None:
                        self.registered = trio.Event()
                        continue
                    await self._update_node_status(current)
                failed = False
                backoff.reset()
                await trio.sleep(self._heartbeat_delay())
            except (ApiUnavailable, ApiError) as exc:
                failed = True
                delay = backoff.next()
                log.info("heartbeat: %s; retrying in %.1fs", exc, delay)
                await trio.sleep(delay)

    # ---- logs ---------------------------------------------------------------------------------

    def _container_for_logs(self, req: LogRequest) -> ContainerInfo:
        pod = self.syncer.find_pod(req.namespace, req.pod)
        containers: list[ContainerInfo] = []
        names: list[str] = []
        if pod is not None:
            containers = list(self.syncer.containers.get(pod_uid(pod), []))
            names = [str(c.get("name")) for c in containers_of(pod)]
        else:
            for group in self.syncer.containers.values():
                containers.extend(c for c in group if c.pod_namespace == req.namespace
                                  and c.pod_name == req.pod)
            names = sorted({c.container_name for c in containers})
        if pod is None and not containers:
            raise LogLookupError(404, "NotFound",
                                 f'pods "{req.pod}" not found on node {self.config.node_name}')
        name = req.container
        if not name:
            if len(names) != 1:
                raise LogLookupError(
                    400, "BadRequest", f"a container name must be specified for pod {req.pod}, "
                    f"choose one of: [{' '.join(names)}]")
            name = names[0]
        elif name not in names:
            raise LogLookupError(400, "BadRequest",
                                 f"container {name} is not valid for pod {req.pod}")
        mine = sorted((c for c in containers if c.container_name == name),
                      key=lambda c: (c.restart_count, c.created_at))
        if req.previous:
            if len(mine) < 2:
                raise LogLookupError(400, "BadRequest", f'previous terminated container "{name}"'
                                     f' in pod "{req.pod}" not found')
            return mine[-2]
        if not mine:
            raise LogLookupError(400, "BadRequest", f'container "{name}" in pod "{req.pod}" is '
                                 "waiting to start: ContainerCreating")
        return mine[-1]

    async def _serve_logs(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        # On the node's address: the API server proxies `kubectl logs` to it there.
        await serve_logs(self.config.address, self.config.log_port or 0,
                         credential=self.log_credential, source=self.log_source,
                         task_status=task_status)

    async def log_source(self, req: LogRequest) -> AsyncIterator[bytes]:
        container = self._container_for_logs(req)
        async for chunk in self.runtime.logs(container.id, follow=req.follow,
                                             tail=req.tail_lines, timestamps=req.timestamps):
            yield chunk


async def run_agent(config: AgentConfig, *, runtime: ContainerRuntime | None = None,
                    session: ApiSession | None = None,
                    task_status: trio.TaskStatus[EdgeAgent] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one edge agent until cancelled (never returns otherwise).

    `runtime`/`session` default to what `config` says (Docker; HTTP to `config.servers`).
    Started with the EdgeAgent once cached pods were adopted and the log endpoint listens;
    masters are contacted afterwards and may be unreachable for as long as they like.
    """
    agent = EdgeAgent(config, runtime=runtime, session=session)
    await agent.serve(task_status=task_status)
