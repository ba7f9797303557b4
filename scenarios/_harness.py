"""The scenario harness: a real local cluster, a real workload, client load, fault injection.

A :class:`Site` is one cluster the harness works on: started with the code behind `edgectl up`
(or an existing one, found through the ``cluster.json`` that `edgectl up` writes next to its
kubeconfig), and the demo workload (busybox httpd Deployment + Service with a virtual IP from
the cluster's service range). Clients on this host reach the VIP through the node agents' own
netproxies (every agent runs one; nodes of a local cluster share this machine); a scenario that
stops every agent asks for a netproxy of its own on this host (``deploy(host_proxy=True)``).
:class:`VipTraffic` and :class:`ApiWriter` load the site the whole time a scenario runs;
processes are killed, stopped and restarted from the records in ``cluster.json``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import ipaddress
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio
import yaml

from cli._common import CommandError
from cli._local import (
    LocalCluster,
    ProcessRecord,
    free_ports,
    is_running,
    remove_node_containers,
    start_local_cluster,
    stop_local_cluster,
)
from controlplane.client import ApiClient, ApiError, ClusterUnreachable
from controlplane.kubeconfig import load_kubeconfig

__all__ = [
    "ApiWriter",
    "ScenarioError",
    "Site",
    "VipTraffic",
    "wait_until",
]

MANIFEST = pathlib.Path(__file__).with_name("manifests") / "demo-app.yaml"
# The demo image `edgectl image build-demo` builds offline.
DEMO_IMAGE = "edgeplane/demo:latest"
# The port the demo Service listens on (the manifest's).
VIP_PORT = 80
# One VIP request may take this long before it counts as failed: far above a healthy answer
# (milliseconds on loopback), well below anything a user would wait for.
VIP_TIMEOUT_S = 2.0
# Pause between VIP requests: ~20 requests/s per client, enough to see a gap of 50 ms.
VIP_INTERVAL_S = 0.05
# A write that did not commit within this long counts as failed: the client rides out a fast
# election but reports a real outage.
WRITE_RETRY_S = 1.0
# Pause between API writes (~10 writes/s: steady load without swamping a 2-core CI host).
WRITE_INTERVAL_S = 0.1
# One status probe of one master: a healthy master answers in milliseconds; a stopped or cut-off
# one must not hold up the probe loop.
PROBE_TIMEOUT_S = 0.7
# Poll period of wait loops (cheap local HTTP requests).
POLL_S = 0.1
# Label on every object the harness creates, so it can find (and delete) them again.
SCENARIO_LABEL = "edgeplane.io/scenario"


class ScenarioError(Exception):
    """The scenario could not go on (a prerequisite is missing, or something never happened)."""


async def wait_until(what: str, predicate: Callable[[], Awaitable[Any]], timeout: float,
                     *, poll: float = POLL_S) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise ScenarioError after ``timeout``."""
    deadline = trio.current_time() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = await predicate()
        except (ApiError, ClusterUnreachable, OSError) as exc:
            result, last_error = None, exc
        if result:
            return result
        if trio.current_time() > deadline:
            extra = f" (last error: {last_error})" if last_error else ""
            raise ScenarioError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        await trio.sleep(poll)


def _say_default(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclasses.dataclass
class PodView:
    name: str
    uid: str
    node: str
    phase: str
    ready: bool
    restarts: int


def pod_view(pod: dict[str, Any]) -> PodView:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or [])
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    return PodView(pod["metadata"]["name"], pod["metadata"].get("uid", ""),
                   (pod.get("spec") or {}).get("nodeName") or "", status.get("phase") or "",
                   ready, restarts)


class Site:
    """One cluster under test, its workload, and the processes the harness may hurt.

    Use ``async with Site(...)``: leaving it tears everything down (processes it started,
    containers, netproxy rules, objects it created in an existing cluster), even on failure.
    """

    def __init__(self, *, directory: str | None = None, kubeconfig: str | None = None,
                 masters: int = 3, nodes: int = 2, replicas: int = 3, keep: bool = False,
                 say: Callable[[str], None] = _say_default) -> None:
        self.say = say
        self.masters_wanted, self.nodes_wanted, self.replicas = masters, nodes, replicas
        self.keep = keep
        self.existing = kubeconfig is not None
        self._tmp: str | None = None
        if kubeconfig is not None:
            self.dir = pathlib.Path(kubeconfig).absolute().parent
        elif directory is not None:
            self.dir = pathlib.Path(directory).absolute()
        else:
            self._tmp = tempfile.mkdtemp(prefix="edgeplane-scenario-")
            self.dir = pathlib.Path(self._tmp)
        self.kubeconfig_path = pathlib.Path(kubeconfig) if kubeconfig else self.dir / "kubeconfig"
        # Names and addresses unique to this run: several sites may share one machine (CI runs
        # scenarios while other tests run), and nodes' containers and VIP rules must not collide.
        rnd = random.Random(os.getpid() ^ time.time_ns())
        self.tag = f"s{rnd.randrange(16**4):04x}"
        self.node_prefix = f"{self.tag}n"
        self.node_net = f"127.{rnd.randrange(20, 100)}.{rnd.randrange(1, 250)}"
        self.vip = ""  # allocated by the cluster when the Service is created
        self.app = "web"
        self.namespace = "default"
        self.cluster: LocalCluster | None = None
        self.client: ApiClient | None = None
        self._probes: dict[str, ApiClient] = {}
        self._created: list[tuple[str, str]] = []
        self._stopped: set[str] = set()  # SIGSTOPped process names (resumed at teardown)
        self._hurt: set[str] = set()  # processes of the cluster this run stopped or killed
        self._spawned: set[str] = set()  # processes this run added (a joined master, netproxy)
        self.proxy: ProcessRecord | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Site:
        await _ensure_image()  # before any cluster: no Docker, no scenario
        try:
            await self._start()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.teardown()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.teardown()

    async def _start(self) -> None:
        if self.existing:
            if not self.kubeconfig_path.is_file():
                raise ScenarioError(f"{self.kubeconfig_path} does not exist")
            try:
                self.cluster = await trio.to_thread.run_sync(LocalCluster.load, self.dir)
            except CommandError as exc:
                raise ScenarioError(f"{exc.format_message().removeprefix('error: ')}; the harness "
                                    "injects faults into the processes `edgectl up` recorded "
                                    "there") from None
            self.say(f"using the existing cluster in {self.dir}")
        else:
            self.say(f"starting a local cluster in {self.dir}: {self.masters_wanted} masters, "
                     f"{self.nodes_wanted} nodes ({self.node_net}.N)")
            started = time.monotonic()
            try:
                self.cluster = await trio.to_thread.run_sync(lambda: start_local_cluster(
                    self.dir, masters=self.masters_wanted, nodes=self.nodes_wanted,
                    node_prefix=self.node_prefix, node_net=self.node_net,
                    progress=lambda text: self.say("  " + text)))
            except CommandError as exc:
                raise ScenarioError(exc.format_message().removeprefix("error: ")) from None
            self.say(f"cluster up in {time.monotonic() - started:.1f}s")
        self.client = ApiClient(load_kubeconfig(str(self.kubeconfig_path)), retry_timeout=30.0,
                                user_agent="edgeplane-scenario")

    async def teardown(self) -> None:
        """Stop what this run started and remove what it created; never raises."""
        notes: list[str] = []
        for name in list(self._stopped):
            with contextlib.suppress(ScenarioError):
                self.signal(name, signal.SIGCONT)
        if self.proxy is not None and is_running(self.proxy):
            # SIGTERM: netproxy removes its nftables table on the way out.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proxy.pid, signal.SIGTERM)
            for _ in range(100):
                if not is_running(self.proxy):
                    break
                await trio.sleep(0.05)
        if self.cluster is not None:
            for record in self.cluster.processes:
                if record.role == "node" and not is_running(record):
                    remove_node_rules(record.name)  # killed agents leave their table behind
        if self.existing:
            await self._restore_existing(notes)
        elif self.cluster is not None and not self.keep:
            cluster = self.cluster
            notes += await trio.to_thread.run_sync(lambda: stop_local_cluster(cluster, grace=5.0))
            await trio.to_thread.run_sync(remove_node_containers, cluster)
        for client in [*self._probes.values(), *([self.client] if self.client else [])]:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._probes.clear()
        if self.keep and self.cluster is not None and not self.existing:
            self.say(f"cluster left running in {self.dir} (stop it: edgectl down --dir {self.dir})")
        for note in notes:
            self.say(note)

    async def _restore_existing(self, notes: list[str]) -> None:
        """An existing cluster is the user's: restart what we killed, delete what we made."""
        if self.cluster is not None:
            for record in self.cluster.processes:
                if record.name in self._hurt - self._spawned and not is_running(record):
                    self.restart(record.name)
                    notes.append(f"restarted {record.name}")
            # What this run added and stopped again is no part of the user's cluster.
            self.cluster.processes = [p for p in self.cluster.processes
                                      if p.name not in self._spawned or is_running(p)]
            self.cluster.save()
        if self.client is not None:
            for plural, name in reversed(self._created):
                with contextlib.suppress(ApiError, ClusterUnreachable):
                    await self.client.delete(plural, name, namespace=self.namespace)
            with contextlib.suppress(ApiError, ClusterUnreachable):
                await self._delete_written()

    async def _delete_written(self) -> None:
        assert self.client is not None
        body = await self.client.list_all("configmaps", namespace=self.namespace,
                                          label_selector=f"{SCENARIO_LABEL}={self.tag}")
        for item in body.get("items", []):
            await self.client.delete("configmaps", item["metadata"]["name"], namespace=self.namespace)

    # ------------------------------------------------------------------ processes

    def records(self, role: str | None = None) -> list[ProcessRecord]:
        assert self.cluster is not None
        return [p for p in self.cluster.processes if role is None or p.role == role]

    def record(self, name: str) -> ProcessRecord:
        for record in self.records():
            if record.name == name:
                return record
        raise ScenarioError(f"no process named {name} in {self.dir}/cluster.json")

    def master_names(self) -> list[str]:
        return [r.name for r in self.records("master")]

    def node_names(self) -> list[str]:
        return [r.name for r in self.records("node")]

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to the process group of ``name`` (its process and anything it started)."""
        record = self.record(name)
        if not is_running(record):
            if sig == signal.SIGCONT:
                self._stopped.discard(name)
                return
            raise ScenarioError(f"{name} (pid {record.pid}) is not running")
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(record.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
            self._hurt.add(name)
        if sig == signal.SIGSTOP:
            self._stopped.add(name)
        elif sig == signal.SIGCONT:
            self._stopped.discard(name)

    def kill(self, name: str) -> None:
        """kill -9: no goodbye, no flushed journal. A killed node's kernel rules go with it, as
        they would with its machine (here every node shares this host's kernel)."""
        self.signal(name, signal.SIGKILL)
        if self.record(name).role == "node":
            remove_node_rules(name)

    async def stop(self, name: str, *, grace: float = 10.0) -> None:
        """SIGTERM, then wait for the process to exit (SIGKILL after ``grace``)."""
        record = self.record(name)
        if not is_running(record):
            return
        self.signal(name, signal.SIGTERM)
        await self.wait_exited(name, grace)

    async def wait_exited(self, name: str, timeout: float = 10.0) -> None:
        record = self.record(name)
        deadline = trio.current_time() + timeout
        while is_running(record):
            if trio.current_time() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(record.pid, signal.SIGKILL)
                deadline += 5.0
            await trio.sleep(0.02)

    # Ctrl-C / SIGTERM (KeyboardInterrupt) is held off until the next checkpoint while a process
    # is started and recorded: raised in between, it left a process the teardown did not know.
    @trio.lowlevel.enable_ki_protection
    def restart(self, name: str) -> ProcessRecord:
        """Start ``name`` again with the command it was started with (its data dir is kept)."""
        record = self.record(name)
        if is_running(record):
            raise ScenarioError(f"{name} is still running (pid {record.pid})")
        argv = list(record.argv)
        if record.role == "master" and "join" in argv:
            # A joined master restarts from its data directory; `join` refuses a used one.
            argv = [sys.executable, "-m", "cli", "master", "start", "--data-dir", record.data_dir]
        record.pid = self._spawn(argv, pathlib.Path(record.log))
        record.argv = argv
        assert self.cluster is not None
        self.cluster.save()
        return record

    def add_process(self, record: ProcessRecord) -> None:
        assert self.cluster is not None
        self.cluster.processes.append(record)
        self.cluster.save()

    def remove_process(self, name: str) -> None:
        assert self.cluster is not None
        self.cluster.processes = [p for p in self.cluster.processes if p.name != name]
        self.cluster.save()

    @staticmethod
    def _spawn(argv: list[str], log: pathlib.Path) -> int:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return proc.pid

    @trio.lowlevel.enable_ki_protection  # see restart
    def spawn(self, role: str, name: str, argv: list[str], **fields: Any) -> ProcessRecord:
        log = self.dir / f"{name}.log"
        pid = self._spawn(argv, log)
        record = ProcessRecord(role, name, pid, str(log), argv, fields.pop("data_dir", ""), **fields)
        self.add_process(record)
        self._spawned.add(name)
        return record

    # ------------------------------------------------------------------ masters

    def api_url(self, name: str) -> str:
        url = self.record(name).api_address
        if not url:
            raise ScenarioError(f"{name} has no API address in cluster.json")
        return url

    def _probe_client(self, url: str) -> ApiClient:
        client = self._probes.get(url)
        if client is None:
            config = dataclasses.replace(load_kubeconfig(str(self.kubeconfig_path)), servers=(url,))
            client = ApiClient(config, retry_timeout=0.0, connect_timeout=PROBE_TIMEOUT_S,
                               read_timeout=PROBE_TIMEOUT_S, user_agent="edgeplane-scenario-probe")
            self._probes[url] = client
        return client

    async def master_status(self, name: str) -> dict[str, Any] | None:
        """``/edgeplane/v1/cluster/status`` as master ``name`` sees it, or None if it does not answer."""
        try:
            url = self.api_url(name)
            with trio.move_on_after(PROBE_TIMEOUT_S * 2):
                return await self._probe_client(url).request_json(
                    "GET", "/edgeplane/v1/cluster/status")
        except (ApiError, ClusterUnreachable, ScenarioError, OSError):
            return None
        return None

    async def statuses(self, names: list[str] | None = None) -> dict[str, dict[str, Any] | None]:
        names = names if names is not None else self.master_names()
        out: dict[str, dict[str, Any] | None] = {}

        async def one(name: str) -> None:
            out[name] = await self.master_status(name)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(one, name)
        return out

    async def leader(self, among: list[str] | None = None) -> tuple[str, dict[str, Any]] | None:
        """The master that says it leads (with the quorum lease), and its status; else None."""
        for name, status in (await self.statuses(among)).items():
            if status and status.get("isLeader"):
                return name, status
        return None

    async def wait_leader(self, among: list[str] | None = None, *, exclude: str | None = None,
                          timeout: float = 30.0, duties: bool = False) -> tuple[str, dict[str, Any]]:
        """Wait until a master other than ``exclude`` leads (and runs the duties, if asked)."""

        async def found() -> tuple[str, dict[str, Any]] | None:
            got = await self.leader(among)
            if got is None or got[0] == exclude:
                return None
            if duties and not (got[1].get("leaderDuties") or {}).get("runningHere"):
                return None
            return got

        return await wait_until("a leader" + (f" other than {exclude}" if exclude else ""),
                                found, timeout, poll=0.02)

    async def wait_caught_up(self, name: str, *, timeout: float = 30.0, max_lag: int = 5) -> None:
        """Wait until the leader reports ``name`` connected with its log within ``max_lag``."""

        async def caught_up() -> bool:
            got = await self.leader()
            if got is None:
                return False
            for member in got[1].get("members", []):
                if member.get("name") == name:
                    if member.get("role") == "leader":
                        return True
                    lag = member.get("lag")
                    return lag is not None and lag <= max_lag and member.get("connected") is not False
            return False

        await wait_until(f"{name} to catch up with the leader", caught_up, timeout)

    # ------------------------------------------------------------------ workload

    def manifest(self) -> list[dict[str, Any]]:
        """The demo app (scenarios/manifests/demo-app.yaml) with this run's VIP and replicas."""
        docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
        for doc in docs:
            doc["metadata"].setdefault("labels", {})[SCENARIO_LABEL] = self.tag
            if doc["kind"] == "Deployment":
                doc["spec"]["replicas"] = self.replicas
            if doc["kind"] == "Service":
                # the cluster allocates the VIP (a fixed one would clash between runs)
                doc["spec"].pop("clusterIP", None)
        return docs

    async def deploy(self, *, timeout: float = 90.0, host_proxy: bool = False) -> None:
        """Create the demo app and wait until every replica answers through the VIP.

        ``host_proxy``: also run a netproxy on this host, for scenarios that stop every agent
        (an agent stopped cleanly removes its rules, as issue 6 asks).
        """
        assert self.client is not None
        for doc in self.manifest():
            plural = {"Deployment": "deployments", "Service": "services"}[doc["kind"]]
            try:
                created = await self.client.create(plural, copy.deepcopy(doc), namespace=self.namespace)
                self._created.append((plural, doc["metadata"]["name"]))
                if plural == "services":
                    self.vip = created["spec"]["clusterIP"]
                    # Client traffic must stay on this machine: a VIP outside loopback means the
                    # cluster was started with a routed service range, and requests would leave.
                    if ipaddress.ip_address(self.vip) not in ipaddress.ip_network("127.0.0.0/8"):
                        raise ScenarioError(f"the Service got VIP {self.vip}, outside 127.0.0.0/8: "
                                            "refusing to send traffic off this machine (start the "
                                            "cluster with a loopback --service-cidr)")
            except ApiError as exc:
                if exc.code != 409:
                    raise
                raise ScenarioError(f"{plural}/{doc['metadata']['name']} already exists in "
                                    f"namespace {self.namespace}: delete it or use a fresh cluster") from None
        self.say(f"deployed {self.app}: {self.replicas} replicas behind VIP {self.vip}:{VIP_PORT}")
        if host_proxy:
            await self.start_proxy()
        await self.wait_ready(self.replicas, timeout=timeout)
        await self.wait_vip_serves(self.replicas, timeout=timeout)

    async def start_proxy(self) -> None:
        """A netproxy on this host (as on a node), with a cache so it serves with masters gone."""
        argv = [sys.executable, "-m", "netproxy", "--kubeconfig", str(self.kubeconfig_path),
                "--mode", "auto", "--table", f"edgeplane-{self.tag}",
                "--cache", str(self.dir / f"netproxy-{self.tag}.cache")]
        self.proxy = self.spawn("proxy", f"netproxy-{self.tag}", argv,
                                data_dir=str(self.dir))

    async def pods(self, client: ApiClient | None = None) -> list[PodView]:
        client = client or self.client
        assert client is not None
        body = await client.list("pods", namespace=self.namespace, label_selector=f"app={self.app}")
        return [pod_view(p) for p in body.get("items", [])
                if not (p.get("metadata") or {}).get("deletionTimestamp")]

    async def wait_ready(self, count: int, *, timeout: float = 60.0,
                         avoid_nodes: set[str] | None = None) -> list[PodView]:
        async def ready() -> list[PodView] | None:
            pods = [p for p in await self.pods() if p.ready and p.phase == "Running"
                    and p.node not in (avoid_nodes or set())]
            return pods if len(pods) >= count else None

        return await wait_until(f"{count} Ready pods of {self.app}", ready, timeout)

    async def wait_vip_serves(self, count: int, *, timeout: float = 60.0) -> set[str]:
        """Wait until ``count`` distinct pods have answered through the VIP."""
        seen: set[str] = set()

        async def all_answer() -> set[str] | None:
            for _ in range(count * 4):
                with contextlib.suppress(OSError, trio.BrokenResourceError, trio.TooSlowError):
                    seen.add(await vip_get(self.vip))
            return seen if len(seen) >= count else None

        return await wait_until(f"{count} pods answering through VIP {self.vip}", all_answer, timeout)

    async def scale(self, replicas: int, *, timeout: float = 30.0) -> None:
        """Set the Deployment's replicas; retried through failovers (setting a value is idempotent)."""
        config = load_kubeconfig(str(self.kubeconfig_path))
        deadline = trio.current_time() + timeout
        attempt = 0
        while True:
            # Each attempt starts at the next master: ApiClient hands a non-idempotent request's
            # 5xx back without failing over, and keeps using the master that sent it; a master
            # cut off from the majority answers every write with a 504 after the store's timeout.
            servers = config.servers[attempt % len(config.servers):] + config.servers[:attempt % len(config.servers)]
            attempt += 1
            try:
                async with ApiClient(dataclasses.replace(config, servers=servers),
                                     retry_timeout=5.0, user_agent="edgeplane-scenario") as client:
                    await client.patch("deployments", self.app, {"spec": {"replicas": replicas}},
                                       namespace=self.namespace)
                return
            except (ClusterUnreachable, ApiError) as exc:
                # 5xx: the outcome of a write cut by the election is unknown; setting it again is safe.
                if isinstance(exc, ApiError) and exc.code < 500 or trio.current_time() > deadline:
                    raise
                await trio.sleep(POLL_S)

    async def node_ready(self, name: str) -> bool | None:
        assert self.client is not None
        node = await self.client.get("nodes", name)
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                return cond.get("status") == "True"
        return None

    async def containers(self, node: str | None = None) -> dict[str, str]:
        """Running Docker containers of this site's pods: container id -> pod name."""
        def listing() -> dict[str, str]:
            import docker

            from edge_agent._runtime import LABEL_NODE, LABEL_POD_NAME
            engine = docker.from_env(timeout=30)
            try:
                out = {}
                for name in ([node] if node else self.node_names()):
                    for c in engine.containers.list(filters={"label": f"{LABEL_NODE}={name}"}):
                        out[c.id] = c.labels.get(LABEL_POD_NAME, "")
                return out
            finally:
                engine.close()

        return await trio.to_thread.run_sync(listing)

    async def kill_containers(self, node: str) -> int:
        """kill -9 every container of ``node`` (what a power cut does to them)."""
        def kill() -> int:
            import docker

            from edge_agent._runtime import LABEL_NODE
            engine = docker.from_env(timeout=30)
            try:
                found = engine.containers.list(filters={"label": f"{LABEL_NODE}={node}"})
                for c in found:
                    with contextlib.suppress(docker.errors.DockerException):
                        c.kill()
                return len(found)
            finally:
                engine.close()

        return await trio.to_thread.run_sync(kill)

    def free_ports(self, count: int) -> list[int]:
        return free_ports(count)


async def _ensure_image() -> None:
    def check() -> None:
        try:
            import docker

            engine = docker.from_env(timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
            raise ScenarioError(f"no Docker engine answers ({exc}); start it "
                                "(as root: bash .ci/start-dockerd.sh)") from None
        try:
            engine.images.get(DEMO_IMAGE)
        except docker.errors.ImageNotFound:
            from cli._image import ImageBuildError, build_demo_image

            try:
                build_demo_image()
            except ImageBuildError as exc:
                raise ScenarioError(f"{DEMO_IMAGE} is missing and cannot be built: {exc}") from None
        except docker.errors.DockerException as exc:
            raise ScenarioError(f"Docker engine error: {exc}") from None
        finally:
            engine.close()

    await trio.to_thread.run_sync(check)


def remove_node_rules(node: str) -> None:
    """Delete node ``node``'s netproxy table (nftables mode; nothing to do otherwise)."""
    from edge_agent._proxy import proxy_table

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["nft", "delete", "table", "ip", proxy_table(node)],
                       capture_output=True, timeout=10)


async def vip_get(vip: str, *, timeout: float = VIP_TIMEOUT_S) -> str:
    """GET / on the VIP; returns the name of the pod that answered."""
    from netproxy.testing import http_get

    page = await http_get(vip, VIP_PORT, timeout=timeout)
    if "pod: " not in page:
        raise OSError(f"unexpected page from {vip}: {page[:80]!r}")
    return page.split("pod: ", 1)[1].split("<", 1)[0]


class VipTraffic:
    """A client looping on the Service VIP (one request at a time, bounded rate) until stopped."""

    def __init__(self, vip: str) -> None:
        self.vip = vip
        self.ok = 0
        self.failures: list[tuple[float, str]] = []  # (trio time, error)
        self.by_pod: Counter[str] = Counter()
        self.last_ok: float | None = None
        self.longest_gap = 0.0

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def failed_between(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.failures if start <= t <= end)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Loop until cancelled."""
        task_status.started()
        while True:
            start = trio.current_time()
            try:
                pod = await vip_get(self.vip)
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                self.failures.append((start, f"{type(exc).__name__}: {exc}"[:200]))
            else:
                now = trio.current_time()
                self.ok += 1
                self.by_pod[pod] += 1
                if self.last_ok is not None:
                    self.longest_gap = max(self.longest_gap, now - self.last_ok)
                self.last_ok = now
            await trio.sleep(VIP_INTERVAL_S)


class ApiWriter:
    """Creates ConfigMaps through the API until stopped; remembers which writes were acknowledged."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.acked: list[str] = []
        self.failed: list[tuple[float, str]] = []  # (trio time, error): no acknowledgement
        self.unknown: list[str] = []  # the client cannot tell whether it committed
        self.ack_times: list[float] = []

    @property
    def total(self) -> int:
        return len(self.acked) + len(self.failed)

    def failed_between(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.failed if start <= t <= end)

    def longest_gap(self) -> float:
        """Longest time between two acknowledged writes: how long the API was unavailable."""
        times = self.ack_times
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = load_kubeconfig(str(self.site.kubeconfig_path))
        async with ApiClient(config, retry_timeout=WRITE_RETRY_S, user_agent="edgeplane-scenario-writer") as client:
            task_status.started()
            seq = 0
            while True:
                seq += 1
                name = f"{self.site.tag}-w{seq:06d}"
                body = {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "labels": {SCENARIO_LABEL: self.site.tag}},
                        "data": {"seq": str(seq)}}
                start = trio.current_time()
                try:
                    await client.create("configmaps", body, namespace=self.site.namespace)
                except ClusterUnreachable as exc:
                    if exc.maybe_committed:
                        self.unknown.append(name)
                    self.failed.append((start, str(exc)[:200]))
                except ApiError as exc:
                    self.failed.append((start, f"{exc.code} {exc.message}"[:200]))
                else:
                    self.acked.append(name)
                    self.ack_times.append(trio.current_time())
                await trio.sleep(WRITE_INTERVAL_S)

    async def lost(self) -> list[str]:
        """Acknowledged writes the cluster no longer has (must be none)."""
        assert self.site.client is not None
        body = await self.site.client.list_all("configmaps", namespace=self.site.namespace,
                                               label_selector=f"{SCENARIO_LABEL}={self.site.tag}")
        present = {item["metadata"]["name"] for item in body.get("items", [])}
        return [name for name in self.acked if name not in present]


@contextlib.asynccontextmanager
async def load(site: Site, *, writes: bool = True) -> AsyncIterator[tuple[VipTraffic, ApiWriter]]:
    """Run VIP traffic (and API writes) in the background for the body of the ``async with``."""
    traffic, writer = VipTraffic(site.vip), ApiWriter(site)
    async with trio.open_nursery() as nursery:
        await nursery.start(traffic.run)
        if writes:
            await nursery.start(writer.run)
        try:
            yield traffic, writer
        finally:
            nursery.cancel_scope.cancel()
