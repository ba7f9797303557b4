"""The master process: a store replica, the API server and the leader duties, in one trio run.

The pysyncobj replica ticks on its own thread (raftstore); everything else is trio tasks:

    serve_master
      ├── API server (hypercorn): the Kubernetes API, plus /edgeplane/v1 (status, membership)
      ├── leader duties (scheduler, controllers) while this replica leads with a quorum lease
      ├── leadership log and bootstrap (standard namespaces) on becoming leader
      ├── event-loop lag probe (cluster status ``eventLoop``, a log line per 30 s with stalls)
      ├── agent spread: the leader sends node agents beyond its share to the other masters
      └── self-registration: /edgeplane/members/<name> so every master can name every member

``edgectl master init|start|join`` (cli/) build a :class:`MasterConfig` and call
:func:`run_master`; tests and tools may run :func:`serve_master` in their own trio run.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from . import errors
from ._master_api import (
    MEMBERS_PREFIX,
    MasterEndpoints,
    MemberRecord,
    decode_member,
    encode_member,
)
from ._master_layout import (
    MasterError,
    MasterLayout,
    MasterSpec,
    new_secret,
    new_token,
    parse_host_port,
    read_private,
    write_private,
)
from ._security import ClusterAuthenticator, log_credential, make_authorizer

__all__ = [
    "Master",
    "MasterConfig",
    "MasterError",
    "MasterLayout",
    "MasterSpec",
    "MemberRecord",
    "configure_logging",
    "new_secret",
    "new_token",
    "parse_host_port",
    "read_private",
    "run_master",
    "serve_master",
    "write_private",
]

log = logging.getLogger("controlplane.master")

# Pause between retries of startup writes (self-registration, bootstrap) while no leader exists:
# about a heartbeat, so they land soon after an election.
_RETRY_PAUSE_S = 0.2
# Query parameters of pods/log that the agent's log endpoint understands.
_LOG_PARAMS = frozenset({"container", "follow", "tailLines", "previous", "timestamps",
                         "limitBytes", "sinceSeconds"})
# The agent is on the same site; a log that does not start within this long is not coming.
_LOG_CONNECT_S = 3.0
_LOG_READ_TIMEOUT_S = 30.0
# How often a master checks who leads, for its log (cheap: a local status read).
_LEADER_POLL_S = 0.25
# Node names as Kubernetes accepts them (DNS-1123 subdomain).
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# A joining master keeps asking the cluster to add it for this long (several elections).
_JOIN_TIMEOUT_S = 60.0
# A leader removing itself asks the new leader to remove it: just elected, that one may answer
# 503 (no lease yet, its first entry not committed) for a moment. Kept under the CLI's 10 s
# read timeout together with the hand-over itself (a few seconds at most).
_HANDED_OVER_REMOVE_TIMEOUT_S = 6.0
# How often the leader re-checks whether it can send node agents elsewhere: an agent that meets
# a master gone since then moves on to the next one by itself.
_SHED_POLL_S = 0.5
# A peer heard from within this long counts as up (a few heartbeats).
_PEER_FRESH_S = 1.0
# The share of an even split of the node agents (nodes / masters) the leader keeps serving: it
# also runs the scheduler and controllers, so it takes fewer; none would move all of the
# agents' load onto the followers (at 1,000 nodes they then stalled more than the leader did).
LEADER_AGENT_SHARE = 0.5
# Overrides LEADER_AGENT_SHARE (e.g. 1 for an even split, to compare): a number >= 0.
AGENT_SHARE_ENV = "EDGEPLANE_LEADER_AGENT_SHARE"


def leader_agent_share(environ: Any = os.environ) -> float:
    """The leader's share of the node agents, from :data:`AGENT_SHARE_ENV` or the default."""
    text = environ.get(AGENT_SHARE_ENV)
    if text is None or text == "":
        return LEADER_AGENT_SHARE
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not share >= 0:  # (also NaN)
        raise MasterError(f"{AGENT_SHARE_ENV} must be a number >= 0 (a share of nodes/masters), got {text!r}")
    return share


# The event-loop lag probe wakes this often: fine enough to see a 100 ms stall (the read
# target), rare enough to cost nothing measurable.
_LAG_PROBE_S = 0.05
# A stall at least this long is counted and logged (a read answered late by this much misses
# the read target by itself).
_LAG_REPORT_S = 0.1
# Stalls are summed up in one log line per this many seconds at most.
_LAG_LOG_EVERY_S = 30.0


class _SlowSteps(trio.abc.Instrument):
    """Diagnosis aid (``EDGEPLANE_SLOW_STEP_MS``): log every task step that holds the event loop
    longer than the threshold, with the task's name, where it stopped and its CPU time (two clock
    reads a step: ~10 % of a busy master's CPU in py-spy, so for diagnosis runs only)."""

    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self.started: float | None = None  # (None: the step began before the instrument)
        self.cpu = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.started = time.perf_counter()
        self.cpu = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.started is None:
            return
        took = time.perf_counter() - self.started
        if took >= self.threshold_s:
            where: str = ""
            coro: Any = task.coro
            while coro is not None:  # where it stopped: the innermost awaiting frame outside trio
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
                if frame is not None and "/trio/" not in frame.f_code.co_filename:
                    where = f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}"
                coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
            # CPU time of this thread: the rest of the step waited for a core or the GIL
            log.info("slow task step: %.0f ms (%.0f ms CPU) in %s (at %s)", took * 1000,
                     (time.thread_time() - self.cpu) * 1000, task.name, where)


class LoopLag:
    """How late the trio loop runs a task that asked to wake (a blocked loop delays every
    request): the longest stall since start and in the current log window, and how many
    stalls reached ``_LAG_REPORT_S``; and the garbage collector's pauses (any thread's
    collection holds the GIL, so the loop too): collections per generation, their total and
    longest wall time. Shown in cluster status and logged."""

    def __init__(self) -> None:
        self.max_s = 0.0
        self.window_max_s = 0.0
        self.stalls = 0
        self.window_stalls = 0
        self.gc_collections = [0, 0, 0]
        self.gc_pause_s = 0.0
        self.gc_max_pause_s = 0.0
        self._gc_started = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"maxStallMs": round(self.max_s * 1000, 1), "stallsOver100ms": self.stalls,
                "windowMaxStallMs": round(self.window_max_s * 1000, 1),
                "gcCollections": list(self.gc_collections),
                "gcPauseMs": round(self.gc_pause_s * 1000, 1),
                "gcMaxPauseMs": round(self.gc_max_pause_s * 1000, 1)}

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # (called by the collector with the GIL held: two clock reads, nothing that allocates much)
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        generation = info.get("generation", 2)
        self.gc_collections[min(max(generation, 0), 2)] += 1
        self.gc_pause_s += took
        if took > self.gc_max_pause_s:
            self.gc_max_pause_s = took

    async def serve(self) -> None:
        slow_ms = os.environ.get("EDGEPLANE_SLOW_STEP_MS")
        if slow_ms:
            trio.lowlevel.add_instrument(_SlowSteps(float(slow_ms) / 1000))
        gc.callbacks.append(self._on_gc)
        try:
            await self._probe()
        finally:
            gc.callbacks.remove(self._on_gc)

    async def _probe(self) -> None:
        window_start = time.monotonic()
        while True:
            due = trio.current_time() + _LAG_PROBE_S
            await trio.sleep_until(due)
            lag = trio.current_time() - due
            self.max_s = max(self.max_s, lag)
            self.window_max_s = max(self.window_max_s, lag)
            if lag >= _LAG_REPORT_S:
                self.stalls += 1
                self.window_stalls += 1
            now = time.monotonic()
            if now - window_start >= _LAG_LOG_EVERY_S:
                if self.window_stalls:
                    log.info("event loop: %d stalls >= %d ms in %.0f s, longest %.0f ms "
                             "(garbage collector since start: %s collections, %.0f ms, longest %.0f ms)",
                             self.window_stalls, _LAG_REPORT_S * 1000, now - window_start,
                             self.window_max_s * 1000, "/".join(map(str, self.gc_collections)),
                             self.gc_pause_s * 1000, self.gc_max_pause_s * 1000)
                window_start = now
                self.window_max_s = 0.0
                self.window_stalls = 0


@dataclass
class MasterConfig:
    """Everything a master needs to run (see ``edgectl master --help``)."""

    spec: MasterSpec
    data_dir: str
    secret: str
    admin_token: str
    # API URLs of a running cluster to ask for membership (``master join``); empty otherwise.
    join_servers: Sequence[str] = ()
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Passed through to the leader duties (node grace period etc.), e.g. from flags.
    leader_options: dict[str, Any] = field(default_factory=dict)
    raft_options: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        host, port = parse_host_port(self.spec.api_addr, "--api-addr")
        scheme = "https" if self.ssl_certfile else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


class _OneLineFormatter(logging.Formatter):
    """``2026-11-26T02:30:00.123Z INFO master m1: became leader term=3`` (tracebacks indented)."""

    def __init__(self, role: str, name: str) -> None:
        super().__init__()
        self.prefix = f"{role} {name}"

    def format(self, record: logging.LogRecord) -> str:
        stamp = f"{_utc(record.created)}.{int(record.msecs):03d}Z"
        source = "" if record.name in ("controlplane.master", "root") else f" [{record.name}]"
        text = f"{stamp} {record.levelname} {self.prefix}{source}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + "\n".join("    " + line for line in
                                     self.formatException(record.exc_info).splitlines())
        return text


def configure_logging(role: str, name: str, *, level: int = logging.INFO) -> None:
    """One readable line per event on stderr, for a master or agent process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(role, name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request access lines would drown the events an operator looks for.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _first_os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _first_os_error(sub)
            if found is not None:
                return found
    return None


def _node_ready(node: dict[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def leads_with_all_peers(raw: dict[str, Any]) -> bool:
    """Whether a store status (``Store.status()``) says: leader with a quorum lease, and every
    other member connected and heard from lately (False for a master alone)."""
    peers = raw.get("members", [])[1:]
    if not raw.get("is_leader") or not peers:
        return False
    return all(m.get("connected") and m.get("last_contact_s") is not None
               and m["last_contact_s"] < _PEER_FRESH_S for m in peers)


class Master:
    """One running master; :meth:`serve` runs it. Its methods back the /edgeplane/v1 endpoints."""

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.spec = config.spec
        self.name = config.spec.name
        self.layout = MasterLayout(config.data_dir)
        # The admin token from D/admin-token, and every other token from the store (opened
        # in serve()).
        self.authenticator = ClusterAuthenticator(None, config.admin_token)
        self.store: Any = None
        self.registry: Any = None
        self.duties: Any = None
        self.network: Any = None
        self.started_at = time.time()
        self.loop_lag = LoopLag()
        #: True while this master leads and every other master is connected: node agents are
        #: then asked to use the other masters while it serves more than agent_budget of their
        #: pod watches (see _shed_agents); agent_watches counts those it serves
        self.sheds_agents = False
        self.agent_watches = 0
        self.agent_budget = 0
        self.agent_share = leader_agent_share()

    # ------------------------------------------------------------------ lifecycle

    async def _open_store(self) -> Any:
        if self.spec.dev_memory_store:
            from raftstore import MemoryStore

            return MemoryStore(name=self.name)
        try:
            from raftstore import RaftStore, ReplicaConfig  # type: ignore[attr-defined]
        except ImportError:  # until raftstore re-exports them
            from raftstore._bridge import RaftStore
            from raftstore._replica import ReplicaConfig
        self.layout.raft.mkdir(parents=True, exist_ok=True)
        replica = ReplicaConfig(
            self_address=self.spec.raft_addr,
            peers=tuple(self.spec.peers),
            data_dir=str(self.layout.raft),
            secret=self.config.secret,
            **({"compaction_min_entries": self.spec.snapshot_count}
               if self.spec.snapshot_count is not None else {}),
            **self.config.raft_options,
        )
        return await RaftStore.open(replica, name=self.name)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``task_status.started(api_url)`` once the API listens.

        Raises :class:`MasterError` when the store or the API address cannot be opened.
        """
        from raftstore import StoreError

        from .apiserver import create_app, serve_api
        from .leader import LeaderConfig, run_leader_duties
        from .registry import Registry

        try:
            self.store = await self._open_store()
        except (OSError, StoreError) as exc:
            raise MasterError(f"cannot open the store (--raft-addr {self.spec.raft_addr}, "
                              f"{self.layout.raft}): {exc}") from exc
        try:
            from ._allocators import ServiceNetwork

            self.network = ServiceNetwork.parse(self.spec.service_cidr)
            self.registry = Registry(self.store, service_network=self.network)
            self.authenticator.store = self.store
            app = create_app(
                self.registry,
                store=self.store,
                authenticator=self.authenticator,
                authorize=make_authorizer(self.registry),
                info={"address": self.config.api_url, "master": self.name},
                log_proxy=self._log_proxy,
            )
            host, port = parse_host_port(self.spec.api_addr, "--api-addr")
            async with trio.open_nursery() as nursery:
                # Watches and lists (the agents', the leader's informers') share one store watch.
                await nursery.start(self.registry.serve_watch_cache)
                try:
                    await nursery.start(
                        lambda task_status: serve_api(
                            MasterEndpoints(app, self), host=host, port=port,
                            ssl_certfile=self.config.ssl_certfile,
                            ssl_keyfile=self.config.ssl_keyfile, task_status=task_status,
                        )
                    )
                except BaseException as exc:
                    # hypercorn binds inside its own nursery: the OSError arrives in a group.
                    bind_error = _first_os_error(exc)
                    if bind_error is None:
                        raise
                    raise MasterError(
                        f"cannot listen on --api-addr {self.spec.api_addr}: "
                        f"{bind_error.strerror or bind_error}"
                    ) from None
                log.info("API listening on %s (raft %s, peers %s)", self.config.api_url,
                         self.spec.raft_addr, ",".join(self.spec.peers) or "none")
                leader_config = LeaderConfig(
                    name=self.name,
                    node_grace_period=self.spec.node_grace_period,
                    pod_eviction_seconds=self.spec.node_toleration_seconds,
                    **self.config.leader_options,
                )
                self.duties = await nursery.start(
                    lambda task_status: run_leader_duties(
                        self.registry, self.store, config=leader_config, task_status=task_status
                    )
                )
                nursery.start_soon(self.loop_lag.serve)
                nursery.start_soon(self._shed_agents)
                nursery.start_soon(self._follow_leadership)
                nursery.start_soon(self._log_leader_changes)
                if self.config.join_servers:
                    await self._ask_to_join()
                nursery.start_soon(self._register_self)
                task_status.started(self.config.api_url)
        finally:
            with trio.CancelScope(shield=True):
                await self.store.aclose()
                log.info("store closed")

    async def _follow_leadership(self) -> None:
        async for leading in self.store.leadership():
            term = self.store.status().get("term")
            if leading:
                log.info("became leader term=%s", term)
                await self._bootstrap()
            else:
                log.info("not the leader term=%s", term)

    async def _shed_agents(self) -> None:
        """The leader's event loop also runs the scheduler and the controllers: at scale it is
        the busiest master, and every request it serves waits behind that work. While every
        other master is connected and it serves more agents' pod watches than
        :data:`LEADER_AGENT_SHARE` of an even share, the leader asks node agents to use the
        others: it serves their request and adds ``X-Edgeplane-Prefer-Other-Master: true``, and
        the agent sends its next requests and its watch to another master (like Kubernetes'
        GOAWAY chance, a hint, never a refusal: an agent that cannot reach the others comes back
        and is served). kubectl and other clients are not affected."""
        while True:
            status = self.store.status()
            sheds = leads_with_all_peers(status)
            if sheds:
                cache = self.registry.watch_cache
                nodes = cache.count("nodes") if cache is not None and cache.ready else 0
                members = len(status.get("members", ())) or 1
                self.agent_budget = int(nodes * self.agent_share / members)
            if sheds != self.sheds_agents:
                self.sheds_agents = sheds
                log.info("node agents %s", f"beyond {self.agent_budget} pod watches sent to the "
                         "other masters (this master leads and all are connected)" if sheds
                         else "served here")
            await trio.sleep(_SHED_POLL_S)

    async def _log_leader_changes(self) -> None:
        """One line whenever the cluster's leader changes, as this replica sees it."""
        seen: tuple[Any, Any] = (None, None)
        while True:
            raw = self.store.status()
            leader, address = raw.get("leader"), raw.get("leader_address")
            if (leader, address) != seen:
                seen = (leader, address)
                name = leader
                if address:
                    try:
                        records = {m.raft_address: m.name for m in await self.members()}
                        name = records.get(address, leader)
                    except Exception:  # noqa: BLE001 - a name is a nicety; the address will do
                        pass
                log.info("leader is %s term=%s", name or "unknown (election)", raw.get("term"))
            await trio.sleep(_LEADER_POLL_S)

    async def _bootstrap(self) -> None:
        """A new cluster's standard namespaces (idempotent; every new leader checks)."""
        from raftstore import StoreUnavailable

        while self.store.is_leader():
            try:
                await self._store_service_network()
                await self.registry.ensure_namespaces()
                return
            except (errors.ApiError, StoreUnavailable) as exc:
                log.warning("bootstrap namespaces: %s; retrying", exc)
                await trio.sleep(_RETRY_PAUSE_S)

    async def _store_service_network(self) -> None:
        """The first leader records the service range; later masters' flags cannot change it
        (VIPs already handed out come from it)."""
        from raftstore import Compare, Op

        from ._allocators import NETWORK_KEY, ServiceNetwork

        result = await self.store.txn([Compare.absent(NETWORK_KEY)], [Op.put(NETWORK_KEY, self.network.encode())],
                                      [Op.get(NETWORK_KEY)])
        if result.succeeded:
            log.info("service range %s", self.network.cidr)
        elif result.results and result.results[0] is not None:
            stored = ServiceNetwork.decode(result.results[0].value)
            if self.spec.service_cidr and stored.cidr != self.network.cidr:
                log.warning("--service-cidr %s ignored: the cluster's service range is %s",
                            self.network.cidr, stored.cidr)
        from ._allocators import repair_allocations

        added, freed = await repair_allocations(self.store)
        if added or freed:
            log.info("service allocations repaired: %d taken, %d freed", added, freed)

    async def _register_self(self) -> None:
        """Write this master's member record once a leader accepts writes."""
        from raftstore import StoreError

        record = MemberRecord(self.name, self.spec.raft_addr, self.config.api_url)
        key = MEMBERS_PREFIX + self.name
        value = encode_member(record)
        while True:
            try:
                kv = await self.store.get(key, linearizable=False)
                if kv is None or kv.value != value:
                    await self.store.put(key, value)
                    log.info("registered as member %s", self.name)
                return
            except StoreError:
                await trio.sleep(_RETRY_PAUSE_S)

    async def _ask_to_join(self) -> None:
        """Ask the running cluster to add this replica (it is already ticking with its peers)."""
        from .client import ApiClient, ApiError, ClusterUnreachable

        record = MemberRecord(self.name, self.spec.raft_addr, self.config.api_url)
        from .kubeconfig import ClientConfig

        ca = self.layout.ca_cert.read_bytes() if self.layout.ca_cert.exists() else None
        client_config = ClientConfig(servers=tuple(self.config.join_servers),
                                     token=self.config.admin_token, ca_data=ca)
        async with ApiClient(client_config, retry_timeout=_JOIN_TIMEOUT_S) as client:
            try:
                await client.request_json("POST", "/edgeplane/v1/members", json_body=record.as_api())
            except (ApiError, ClusterUnreachable) as exc:
                raise MasterError(f"the cluster did not add {self.name}: {exc}") from exc
        log.info("joined the cluster as %s", self.name)

    async def _log_proxy(
        self, namespace: str, pod: str, query: dict[str, str]
    ) -> AsyncIterator[bytes]:
        """``pods/log``: stream the log from the agent of the pod's node (its log endpoint)."""
        import httpx

        obj = await self.registry.get("pods", namespace, pod)
        node_name = (obj.get("spec") or {}).get("nodeName")
        node = await self.registry.get("nodes", None, node_name)
        status = node.get("status") or {}
        address = next((a.get("address") for a in status.get("addresses") or []
                        if a.get("type") == "InternalIP"), None)
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        if not address or not port:
            raise errors.ApiError(503, "ServiceUnavailable",
                                  f"node {node_name} does not report a log endpoint")
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{port}/api/v1/namespaces/{namespace}/pods/{pod}/log"
        params = {k: v for k, v in query.items() if k in _LOG_PARAMS}
        follow = query.get("follow") in ("true", "1")
        timeout = httpx.Timeout(None if follow else _LOG_READ_TIMEOUT_S, connect=_LOG_CONNECT_S)
        async with httpx.AsyncClient(timeout=timeout) as http:
            try:
                async with http.stream(
                    "GET", url, params=params,
                    # The node's own log credential (derived from the cluster secret): never
                    # the admin token, which a node must not learn.
                    headers={"Authorization":
                             f"Bearer {log_credential(self.config.secret, node_name)}"},
                ) as response:
                    if response.status_code == 401:
                        # An agent started with a bare --token (not joined with a join token)
                        # does not know the log credential the masters derive for its node.
                        raise errors.ApiError(
                            502, "BadGateway",
                            f"the agent of node {node_name} refused the masters' log credential: "
                            "join it with a node join token (`edgectl token create`, then "
                            "`edgectl node join --token ...`) so it gets its own credentials")
                    if response.status_code >= 400:
                        from .client import ApiError, status_of

                        await response.aread()
                        raise ApiError(status_of(response))
                    async for chunk in response.aiter_bytes():
                        yield chunk
            except httpx.HTTPError as exc:
                raise errors.ApiError(
                    503, "ServiceUnavailable",
                    f"the agent of node {node_name} ({address}:{port}) does not answer: {exc}",
                ) from exc

    # ------------------------------------------------------------------ /edgeplane/v1 backends

    async def members(self) -> list[MemberRecord]:
        result = await self.store.range(MEMBERS_PREFIX, linearizable=False)
        records = [decode_member(kv.value) for kv in result.kvs]
        return [r for r in records if r is not None]

    def ca_pem(self) -> bytes | None:
        """The cluster CA certificate (PEM), or None when this master serves plain HTTP."""
        if not self.config.ssl_certfile or not self.layout.ca_cert.exists():
            return None
        return self.layout.ca_cert.read_bytes()

    async def node_join(self, node: str, join_token: Any) -> dict[str, Any]:
        """A joining node's own credentials (replacing any it had): an API token that
        authenticates as system:node:<node>, and its log endpoint's credential."""
        if not _NODE_NAME.match(node):
            raise errors.bad_request(f"invalid node name {node!r}: a lower-case DNS-1123 "
                                     "subdomain is required")
        revoked = await self.authenticator.revoke_node(node)
        if revoked:
            log.info("node %s joins again: its previous credential(s) revoked", node)
        _, bearer = await self.authenticator.create(
            kind="auth", role="node", name=node,
            description=f"node credential (join token {join_token.id})")
        pem = self.ca_pem()
        return {
            "nodeName": node,
            "token": bearer,
            "logCredential": log_credential(self.config.secret, node),
            "caCert": pem.decode() if pem else None,
            "servers": [m.api_address for m in await self.members()] or [self.config.api_url],
        }

    async def join_info(self, *, with_admin_token: bool = False) -> dict[str, Any]:
        info: dict[str, Any] = {
            "secret": self.config.secret,
            "members": [m.as_api() for m in await self.members()],
        }
        if with_admin_token:
            # A master join token grants what a master holds: the secret, the CA key and the
            # admin token (every master runs with it).
            info["adminToken"] = self.config.admin_token
        if self.layout.ca_cert.exists() and self.layout.ca_key.exists():
            info["caCert"] = self.layout.ca_cert.read_text()
            info["caKey"] = self.layout.ca_key.read_text()
        return info

    def _require_leader(self, what: str) -> None:
        if not self.store.is_leader():
            leader = self.store.status().get("leader")
            raise errors.service_unavailable(
                f"{what} must be done by the Raft leader; {self.name} is not "
                f"(leader: {leader or 'none elected'})"
            )

    async def add_member(self, record: MemberRecord) -> list[MemberRecord]:
        from raftstore import StoreError

        if not hasattr(self.store, "add_member"):
            raise errors.bad_request("this master runs a single-master development store")
        self._require_leader("adding a master")
        for existing in await self.members():
            if existing.name == record.name and existing.raft_address != record.raft_address:
                raise errors.ApiError(409, "AlreadyExists",
                                      f"a master named {record.name} already exists "
                                      f"(raft {existing.raft_address})")
        try:
            await self.store.add_member(record.raft_address, name=record.name)
            await self.store.put(MEMBERS_PREFIX + record.name, encode_member(record))
        except StoreError as exc:
            raise errors.service_unavailable(f"adding {record.name}: {exc}") from exc
        return await self.members()

    async def remove_member(self, name: str) -> list[MemberRecord]:
        from raftstore import StoreError

        if not hasattr(self.store, "remove_member"):
            raise errors.bad_request("this master runs a single-master development store")
        self._require_leader("removing a master")
        record = next((m for m in await self.members() if m.name == name), None)
        if record is None:
            raise errors.ApiError(404, "NotFound", f'master "{name}" not found')
        if name == self.name:
            return await self._remove_self()
        try:
            await self.store.remove_member(record.raft_address)
            await self.store.delete(MEMBERS_PREFIX + name)
        except StoreError as exc:
            raise errors.service_unavailable(f"removing {name}: {exc}") from exc
        return await self.members()

    async def _remove_self(self) -> list[MemberRecord]:
        """Remove this master while it leads (etcd's ``member remove`` of the leader): hand the
        leadership to a member that holds the whole log, then have the new leader remove this
        one as it removes any follower (a leader cannot commit its own removal in pysyncobj,
        and the removed replica never hears of its removal's commit). Nothing changes when no
        other member is connected and caught up."""
        from raftstore import StoreError, StoreUnavailable

        from .client import ApiClient, ClusterUnreachable
        from .kubeconfig import ClientConfig

        if not self.store.status().get("members", [])[1:]:
            raise errors.ApiError(409, "Conflict", f"{self.name} is the only master: the last "
                                  "member of a cluster cannot be removed")
        try:
            new_leader = await self.store.transfer_leadership()
        except StoreUnavailable as exc:
            # It no longer leads: another master (the new leader) can remove it as a follower.
            raise errors.service_unavailable(f"removing {self.name}: {exc}") from exc
        except StoreError as exc:
            raise errors.ApiError(
                409, "Conflict",
                f"{self.name} is the current leader and could not hand its leadership to another "
                f"master, so it was not removed (nothing changed): {exc}") from exc
        records = await self.members()
        successor = next((m for m in records if m.raft_address == new_leader), None)
        log.info("leadership handed to %s to remove %s", successor.name if successor else new_leader,
                 self.name)
        # The new leader first; the others answer 503 ("not the leader") and are passed over.
        servers = [m.api_address for m in sorted(records, key=lambda m: m is not successor)
                   if m.name != self.name and m.api_address]
        if not servers:
            raise errors.service_unavailable(
                f"{self.name} handed its leadership to {new_leader}, whose API address is not "
                f"known here: run the removal again (`edgectl master remove {self.name}`)")
        ca = self.layout.ca_cert.read_bytes() if self.layout.ca_cert.exists() else None
        client_config = ClientConfig(servers=tuple(servers), token=self.config.admin_token, ca_data=ca)
        async with ApiClient(client_config, retry_timeout=_HANDED_OVER_REMOVE_TIMEOUT_S) as client:
            try:
                body = await client.request_json("DELETE", f"/edgeplane/v1/members/{self.name}")
            except ClusterUnreachable as exc:
                raise errors.service_unavailable(
                    f"{self.name} handed its leadership to "
                    f"{successor.name if successor else new_leader}, which did not remove it: "
                    f"{exc}; run the removal again") from exc
        members = [MemberRecord(str(m.get("name")), str(m.get("raftAddress")), str(m.get("apiAddress")))
                   for m in body.get("members", [])]
        return members

    async def cluster_status(self) -> dict[str, Any]:
        """What ``edgectl cluster status`` shows, as this master sees it (local reads only, so
        it answers even without a quorum: that is when an operator needs it most)."""
        from .leader import DUTIES_LEASE_NAME, DUTIES_LEASE_NAMESPACE

        raw = self.store.status()
        records = await self.members()
        by_addr = {m.raft_address: m for m in records}
        commit = raw.get("commit_index") or 0
        leader_addr = raw.get("leader_address")
        if leader_addr is None and raw.get("leader"):
            # A store without addresses (the dev MemoryStore) names its leader only.
            leader_addr = next((m.get("address") for m in raw.get("members", [])
                                if m.get("name") == raw["leader"]), None)
        members = []
        for m in raw.get("members", []):
            record = by_addr.get(m.get("address"))
            match = m.get("match_index")
            members.append({
                "name": record.name if record else m.get("name"),
                "raftAddress": m.get("address"),
                "apiAddress": record.api_address if record else None,
                "role": "leader" if m.get("address") == leader_addr else "follower",
                "matchIndex": match,
                "lag": (commit - match) if isinstance(match, int) else None,
                "lastContactSeconds": m.get("last_contact_s"),
                "connected": m.get("connected"),
            })
        leader_record = by_addr.get(leader_addr) if leader_addr else None
        leader = leader_record.name if leader_record else raw.get("leader")
        holder = None
        renewed = None
        try:
            lease = await self.registry.get("leases", DUTIES_LEASE_NAMESPACE, DUTIES_LEASE_NAME,
                                            resource_version="0")
            holder = (lease.get("spec") or {}).get("holderIdentity")
            renewed = (lease.get("spec") or {}).get("renewTime")
        except errors.ApiError:
            pass
        nodes: list[dict[str, Any]] = []
        try:
            listed = await self.registry.list("nodes", None, resource_version="0")
            nodes = [{"name": n["metadata"]["name"], "ready": _node_ready(n)}
                     for n in listed.get("items", [])]
        except errors.ApiError:
            pass
        duties = self.duties.as_dict() if self.duties is not None else {}
        return {
            "kind": "ClusterStatus",
            "apiVersion": "edgeplane/v1",
            "self": self.name,
            "isLeader": bool(raw.get("is_leader")),
            "leader": leader,
            "leaderApiAddress": leader_record.api_address if leader_record else None,
            "term": raw.get("term"),
            "commitIndex": commit,
            "appliedIndex": raw.get("applied_index"),
            "revision": raw.get("revision"),
            "members": members,
            "eventLoop": self.loop_lag.as_dict(),
            "leaderDuties": {
                "holder": holder if holder else (self.name if duties.get("running") else None),
                "renewTime": renewed,
                "runningHere": bool(duties.get("running")),
                "since": _utc(duties["since"]) + "Z" if duties.get("since") else None,
            },
            "nodes": {
                "total": len(nodes),
                "ready": sum(1 for n in nodes if n["ready"]),
                "notReady": sum(1 for n in nodes if not n["ready"]),
                "items": nodes,
            },
        }


async def serve_master(
    config: MasterConfig, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run one master until cancelled (see :class:`Master`)."""
    await Master(config).serve(task_status=task_status)


async def _until_signalled(config: MasterConfig) -> None:
    from raftstore import serve_gc_policy

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            master = Master(config)
            await nursery.start(master.serve)
            # Process-wide, so only in a master's own process (not in-process test masters):
            # keeps full GC pauses from stalling heartbeats (see raftstore._gcpolicy).
            await nursery.start(
                serve_gc_policy, lambda: master.store is not None and master.store.is_leader()
            )
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def run_master(config: MasterConfig) -> None:
    """Run a master in this process until SIGTERM/SIGINT. Raises :class:`MasterError`."""
    configure_logging("master", config.spec.name)
    log.info("starting (pid %d, data dir %s)", os.getpid(), config.data_dir)
    trio.run(_until_signalled, config)
    log.info("stopped")
