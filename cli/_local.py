"""``edgectl up`` / ``edgectl down``: a whole local cluster as background processes in one directory.

``up`` starts every master (and node agent) as its own process on loopback addresses, waits
until the API answers on every master, and records what it started in ``D/cluster.json``::

    {"dir": D, "kubeconfig": "D/kubeconfig",
     "processes": [{"role": "master", "name": "m1", "pid": 1234, "raftAddress": "127.0.0.1:P",
                    "apiAddress": "http://127.0.0.1:Q", "dataDir": "D/m1", "log": "D/m1.log",
                    "argv": [...]}, ...]}

``down`` stops exactly those processes (SIGTERM, a grace period, then SIGKILL), checking each
pid still runs the command it was started with so a reused pid is never signalled.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click
import httpx

from controlplane._allocators import LOCAL_SERVICE_CIDR
from controlplane._master_tls import new_ca, write_ca
from controlplane.kubeconfig import write_kubeconfig
from controlplane.master import new_secret, new_token, write_private

from ._common import CommandError

__all__ = [
    "LocalCluster",
    "ProcessRecord",
    "down_command",
    "free_ports",
    "is_running",
    "process_start_time",
    "remove_node_containers",
    "restart_local_cluster",
    "start_local_cluster",
    "stop_local_cluster",
    "up_command",
]

# Masters of a fresh cluster elect a leader within a second; a slow, busy CI host may need
# many times that, and starting the Python processes alone takes a few seconds.
_UP_TIMEOUT_S = 60.0
# How long down waits after SIGTERM before SIGKILL (masters flush their journal on SIGTERM).
_DOWN_GRACE_S = 10.0
# Poll interval while waiting for processes (cheap: one local HTTP request per master).
_POLL_S = 0.1
# Tries of a fresh start when a probed free port was taken before a master bound it.
_PORT_ATTEMPTS = 3
# What a master's log says when its port was taken.
_BIND_ERRORS = ("Address already in use", "cannot bind", "cannot listen")
# The join token of `up`'s nodes only has to outlive their first start.
_JOIN_TOKEN_TTL_S = 3600
# Node agents of a local cluster get 127.0.1.N, as the design's networking model says.
_NODE_NET = "127.0.1"


@dataclass
class ProcessRecord:
    role: str
    name: str
    pid: int
    log: str
    argv: list[str]
    data_dir: str
    raft_address: str | None = None
    api_address: str | None = None
    address: str | None = None  # a node's IP
    runtime: str | None = None  # a node's container runtime: "docker" or "hollow"
    start_time: int | None = None  # /proc start time: tells our process from a reused pid

    def as_json(self) -> dict[str, Any]:
        out = {"role": self.role, "name": self.name, "pid": self.pid, "log": self.log,
               "dataDir": self.data_dir, "argv": self.argv}
        if self.raft_address:
            out["raftAddress"] = self.raft_address
        if self.api_address:
            out["apiAddress"] = self.api_address
        if self.address:
            out["address"] = self.address
        if self.runtime:
            out["runtime"] = self.runtime
        if self.start_time is not None:
            out["startTime"] = self.start_time
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(role=data["role"], name=data["name"], pid=int(data["pid"]), log=data["log"],
                   argv=list(data.get("argv", [])), data_dir=data.get("dataDir", ""),
                   raft_address=data.get("raftAddress"), api_address=data.get("apiAddress"),
                   address=data.get("address"), runtime=data.get("runtime"),
                   start_time=data.get("startTime"))


@dataclass
class LocalCluster:
    dir: pathlib.Path
    processes: list[ProcessRecord] = field(default_factory=list)

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.dir / "kubeconfig"

    @property
    def state_file(self) -> pathlib.Path:
        return self.dir / "cluster.json"

    def masters(self) -> list[ProcessRecord]:
        return [p for p in self.processes if p.role == "master"]

    def save(self) -> None:
        body = {"dir": str(self.dir), "kubeconfig": str(self.kubeconfig),
                "processes": [p.as_json() for p in self.processes]}
        tmp = self.state_file.with_name("cluster.json.tmp")
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LocalCluster:
        root = pathlib.Path(directory).absolute()
        try:
            body = json.loads((root / "cluster.json").read_text())
            return cls(root, [ProcessRecord.from_json(p) for p in body.get("processes", [])])
        except FileNotFoundError:
            raise CommandError(f"error: {root}/cluster.json does not exist "
                               "(no cluster was started there with edgectl up)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"error: {root}/cluster.json is damaged: {exc}") from None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the kernel says are free now (bind to port 0, then release)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields if fields else None


def process_start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with the pid, a unique identity."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None  # field 22 of stat; fields start at 3
    except (IndexError, ValueError):
        return None


def is_running(record: ProcessRecord) -> bool:
    """True if ``record.pid`` is alive and is still the process we started (not a reused pid)."""
    fields = _proc_stat(record.pid)
    if fields is None or fields[0] == "Z":
        return False  # gone, or a zombie: exited, only waiting to be reaped
    if record.start_time is not None and process_start_time(record.pid) == record.start_time:
        return True
    # No start time recorded, or the record's pid was replaced by whoever restarted it:
    # compare the command line instead.
    try:
        raw = pathlib.Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if not args:
        # Right after fork/exec the command line reads empty for a moment: alive, unknown.
        return True
    # Compare without the interpreter path, which /proc may show resolved differently.
    return args[1:] == record.argv[1:] if record.argv else True


def _spawn(argv: list[str], log_path: pathlib.Path) -> int:
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            # Its own session: ^C at the terminal of `up` does not reach it, and `down` can
            # signal it (and anything it started) as a process group.
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return proc.pid


def _tail(path: str, lines: int = 15) -> str:
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _api_answers(url: str, token: str, verify: ssl.SSLContext) -> bool:
    """The master serves a linearizable read: a leader exists and the bootstrap is done."""
    try:
        response = httpx.get(f"{url}/api/v1/namespaces/default",
                             headers={"Authorization": f"Bearer {token}"}, timeout=2.0,
                             verify=verify)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def start_local_cluster(
    directory: str | os.PathLike[str],
    *,
    masters: int = 3,
    nodes: int = 0,
    hollow: bool = False,
    node_prefix: str = "n",
    node_net: str = _NODE_NET,
    base_port: int | None = None,
    timeout: float = _UP_TIMEOUT_S,
    extra_master_args: list[str] | None = None,
    extra_node_args: list[str] | None = None,
    progress: Any = None,
) -> LocalCluster:
    """Start a local cluster (see the module docstring); returns once every master answers.

    Raises :class:`CommandError` (after stopping what it started) if a process exits or the
    API does not answer on every master within ``timeout``.
    """
    say = progress or (lambda text: None)
    root = pathlib.Path(directory).absolute()
    root.mkdir(parents=True, exist_ok=True)
    if (root / "cluster.json").exists():
        old = LocalCluster.load(root)
        alive = [p for p in old.processes if is_running(p)]
        if alive:
            raise CommandError(
                f"error: a cluster is already running in {root} "
                f"({', '.join(p.name for p in alive)}); stop it with `edgectl down --dir {root}`"
            )
        if old.processes:
            return restart_local_cluster(old, timeout=timeout, progress=say)
    if masters < 1:
        raise CommandError("error: --masters must be at least 1")
    attempts = 1 if base_port is not None else _PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return _start_fresh(root, masters=masters, nodes=nodes, hollow=hollow,
                                node_prefix=node_prefix, node_net=node_net, base_port=base_port,
                                timeout=timeout, extra_master_args=extra_master_args,
                                extra_node_args=extra_node_args, say=say)
        except CommandError as exc:
            # Free ports are probed, then bound by the masters a moment later: another process
            # may take one in between. Start over on new ports (nothing of value exists yet).
            if attempt == attempts or not any(m in exc.message for m in _BIND_ERRORS):
                raise
            say(f"a port was taken meanwhile ({attempt}/{attempts}); retrying on new ports")
            _wipe_fresh_cluster(root)
    raise AssertionError("unreachable")


def _wipe_fresh_cluster(root: pathlib.Path) -> None:
    import shutil

    cluster = LocalCluster.load(root)
    for record in cluster.processes:
        shutil.rmtree(record.data_dir, ignore_errors=True)
        pathlib.Path(record.log).unlink(missing_ok=True)
    cluster.state_file.unlink(missing_ok=True)


def _start_fresh(root: pathlib.Path, *, masters: int, nodes: int, hollow: bool, node_prefix: str,
                 node_net: str, base_port: int | None, timeout: float,
                 extra_master_args: list[str] | None, say: Any,
                 extra_node_args: list[str] | None = None) -> LocalCluster:
    if base_port is not None:
        ports = list(range(base_port, base_port + 2 * masters))
    else:
        ports = free_ports(2 * masters)
    raft_addrs = [f"127.0.0.1:{ports[2 * i]}" for i in range(masters)]
    api_addrs = [f"127.0.0.1:{ports[2 * i + 1]}" for i in range(masters)]
    secret_file, token_file = root / "secret", root / "admin-token"
    ca_cert, ca_key = root / "ca.crt", root / "ca.key"
    token = new_token()
    write_private(secret_file, new_secret())
    write_private(token_file, token)
    ca = new_ca()
    write_ca(ca, ca_cert, ca_key)
    names = [f"m{i + 1}" for i in range(masters)]
    urls = [f"https://{a}" for a in api_addrs]
    write_kubeconfig(root / "kubeconfig", urls, token=token, names=names, ca_data=ca.cert_pem)
    verify = ssl.create_default_context(cadata=ca.cert_pem.decode())

    cluster = LocalCluster(root)
    try:
        for i, name in enumerate(names):
            data_dir = root / name
            argv = [sys.executable, "-m", "cli", "master", "start", "--name", name,
                    "--data-dir", str(data_dir), "--raft-addr", raft_addrs[i],
                    "--api-addr", api_addrs[i], "--secret-file", str(secret_file),
                    "--admin-token-file", str(token_file), "--ca-cert-file", str(ca_cert),
                    "--ca-key-file", str(ca_key)]
            for j, peer in enumerate(raft_addrs):
                if j != i:
                    argv += ["--peer", peer]
            argv += list(extra_master_args or [])
            if "--service-cidr" not in argv:
                # Local clusters keep every VIP on loopback (never Kubernetes' 10.96/12, which
                # a node without rules for a VIP would route off this machine).
                argv += ["--service-cidr", LOCAL_SERVICE_CIDR]
            log_path = root / f"{name}.log"
            pid = _spawn(argv, log_path)
            cluster.processes.append(ProcessRecord("master", name, pid, str(log_path), argv,
                                                   str(data_dir), raft_addrs[i], urls[i],
                                                   start_time=process_start_time(pid)))
            cluster.save()
        say(f"started {masters} master(s): " + ", ".join(
            f"{p.name} (pid {p.pid}, api {p.api_address})" for p in cluster.masters()))
        _wait_for_masters(cluster, token, verify, timeout, say)
        if nodes:
            _start_nodes(cluster, nodes, hollow=hollow, token_file=token_file, urls=urls,
                         node_prefix=node_prefix, node_net=node_net,
                         ca_cert=ca_cert, verify=verify, timeout=timeout, say=say,
                         extra_node_args=extra_node_args)
    except BaseException:
        stop_local_cluster(cluster, grace=2.0)
        raise
    return cluster


def restart_local_cluster(cluster: LocalCluster, *, timeout: float = _UP_TIMEOUT_S,
                          progress: Any = None) -> LocalCluster:
    """Start a stopped cluster's processes again, from their data directories (same names,
    addresses, secrets and data); returns once every master answers."""
    say = progress or (lambda text: None)
    token = (cluster.dir / "admin-token").read_text().strip()
    verify = ssl.create_default_context(cafile=str(cluster.dir / "ca.crt"))
    try:
        for record in cluster.processes:
            if record.role == "master" and "join" in record.argv:
                # A joined master restarts as a member, from what its data directory records.
                record.argv = [sys.executable, "-m", "cli", "master", "start",
                               "--data-dir", record.data_dir]
            record.pid = _spawn(record.argv, pathlib.Path(record.log))
            record.start_time = process_start_time(record.pid)
            cluster.save()
        say(f"restarted {len(cluster.processes)} process(es) of {cluster.dir}")
        _wait_for_masters(cluster, token, verify, timeout, say)
    except BaseException:
        stop_local_cluster(cluster, grace=2.0)
        raise
    return cluster


def _wait_for_masters(cluster: LocalCluster, token: str, verify: ssl.SSLContext, timeout: float,
                      say: Any) -> None:
    deadline = time.monotonic() + timeout
    pending = {p.name: p for p in cluster.masters()}
    started = time.monotonic()
    while pending:
        for name, record in list(pending.items()):
            if not is_running(record):
                raise CommandError(f"error: master {name} exited during startup; its log "
                                   f"({record.log}) ends with:\n{_tail(record.log)}")
            if _api_answers(record.api_address or "", token, verify):
                del pending[name]
                say(f"  {name} answers at {record.api_address} "
                    f"({time.monotonic() - started:.1f}s)")
        if not pending:
            return
        if time.monotonic() > deadline:
            detail = "\n".join(f"  {n}: log {r.log}:\n{_tail(r.log, 8)}" for n, r in pending.items())
            raise CommandError(f"error: after {timeout:.0f}s the API does not answer on "
                               f"{', '.join(pending)}\n{detail}")
        time.sleep(_POLL_S)


def _create_join_token(urls: list[str], admin_token: str, verify: ssl.SSLContext,
                       timeout: float) -> str:
    """A node join token valid while the local nodes start (they keep their own credential)."""
    deadline = time.monotonic() + timeout
    last = "no master tried"
    while time.monotonic() < deadline:
        for url in urls:
            try:
                response = httpx.post(f"{url}/edgeplane/v1/tokens", json={
                    "kind": "join", "role": "node", "ttlSeconds": _JOIN_TOKEN_TTL_S,
                    "description": "edgectl up: local nodes"},
                    headers={"Authorization": f"Bearer {admin_token}"}, timeout=5.0,
                    verify=verify)
            except httpx.HTTPError as exc:
                last = f"{url}: {exc}"
                continue
            if response.status_code == 201:
                return str(response.json()["token"])
            last = f"{url}: HTTP {response.status_code} {response.text[:200]}"
        time.sleep(_POLL_S)
    raise CommandError(f"error: cannot create a node join token: {last}")


def _start_nodes(cluster: LocalCluster, count: int, *, hollow: bool, token_file: pathlib.Path,
                 node_prefix: str, node_net: str,
                 urls: list[str], ca_cert: pathlib.Path, verify: ssl.SSLContext, timeout: float,
                 say: Any, extra_node_args: list[str] | None = None) -> None:
    token = token_file.read_text().strip()
    # Nodes join with a node join token (they never see the admin token); each trades it for
    # its own credential on first start, and restarts use that credential.
    join_token_file = cluster.dir / "node-join-token"
    write_private(join_token_file, _create_join_token(urls, token, verify, timeout))
    for i in range(count):
        name = f"{node_prefix}{i + 1}"
        address = f"{node_net}.{i + 1}"
        data_dir = cluster.dir / name
        argv = [sys.executable, "-m", "cli", "node", "join", "--name", name,
                "--data-dir", str(data_dir), "--address", address,
                "--token-file", str(join_token_file),
                # Any free port: clusters side by side must not fight over 10250; the node
                # reports the port it got, and the masters proxy logs there.
                "--log-port", "0"]
        for url in urls:
            argv += ["--server", url]
        if hollow:
            argv.append("--hollow")
        argv += list(extra_node_args or [])
        log_path = cluster.dir / f"{name}.log"
        pid = _spawn(argv, log_path)
        cluster.processes.append(ProcessRecord("node", name, pid, str(log_path), argv,
                                               str(data_dir), address=address,
                                               runtime="hollow" if hollow else "docker",
                                               start_time=process_start_time(pid)))
        cluster.save()
    say(f"started {count} node agent(s); waiting for them to register")
    deadline = time.monotonic() + timeout
    names = {p.name: p for p in cluster.processes if p.role == "node"}
    while True:
        for record in names.values():
            if not is_running(record):
                raise CommandError(f"error: node {record.name} exited during startup; its log "
                                   f"({record.log}) ends with:\n{_tail(record.log)}")
        registered = set()
        for url in urls:
            try:
                response = httpx.get(f"{url}/api/v1/nodes",
                                     headers={"Authorization": f"Bearer {token}"}, timeout=2.0,
                                     verify=verify)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                registered = {n["metadata"]["name"] for n in response.json().get("items", [])}
                break
        if set(names) <= registered:
            say(f"  {count} node(s) registered")
            return
        if time.monotonic() > deadline:
            raise CommandError(f"error: nodes {sorted(set(names) - registered)} did not register "
                               f"within {timeout:.0f}s (logs in {cluster.dir})")
        time.sleep(_POLL_S * 3)


def stop_local_cluster(cluster: LocalCluster, *, grace: float = _DOWN_GRACE_S,
                       progress: Any = None) -> list[str]:
    """SIGTERM every process still running, SIGKILL those alive after ``grace``; returns notes."""
    say = progress or (lambda text: None)
    notes = []
    alive = [p for p in cluster.processes if is_running(p)]
    # Nodes first: their agents may still report to the masters while stopping.
    alive.sort(key=lambda p: p.role != "node")
    for record in alive:
        try:
            os.killpg(record.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        except PermissionError:
            os.kill(record.pid, signal.SIGTERM)
        say(f"stopping {record.role} {record.name} (pid {record.pid})")
    deadline = time.monotonic() + grace
    while any(is_running(p) for p in alive) and time.monotonic() < deadline:
        _reap(alive)
        time.sleep(_POLL_S)
    for record in alive:
        if is_running(record):
            try:
                os.killpg(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            notes.append(f"{record.name} did not stop within {grace:.0f}s: killed")
    kill_deadline = time.monotonic() + 5.0
    while any(is_running(p) for p in alive) and time.monotonic() < kill_deadline:
        _reap(alive)
        time.sleep(_POLL_S)
    return notes


def remove_node_containers(cluster: LocalCluster) -> list[str]:
    """Remove the Docker containers the cluster's agents started (labelled with their node)."""
    names = [p.name for p in cluster.processes if p.role == "node" and p.runtime == "docker"]
    if not names:
        return []
    try:
        import docker

        from edge_agent._runtime import LABEL_NODE
    except ImportError as exc:
        return [f"containers not removed: {exc}"]
    notes = []
    try:
        engine = docker.from_env(timeout=30)
        for name in names:
            for container in engine.containers.list(all=True,
                                                    filters={"label": f"{LABEL_NODE}={name}"}):
                container.remove(force=True)
                notes.append(f"removed container {container.name} of node {name}")
    except docker.errors.DockerException as exc:
        notes.append(f"containers not removed (Docker: {exc})")
    return notes


def _reap(records: list[ProcessRecord]) -> None:
    """Collect the exit status of those records that are our own children (when up and down
    run in one process), and only those: other children of the caller are not ours to reap."""
    for record in records:
        try:
            os.waitpid(record.pid, os.WNOHANG)
        except ChildProcessError:
            pass


@click.command("up")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="Directory for the cluster's data, logs, kubeconfig and cluster.json.")
@click.option("--masters", default=3, show_default=True, type=click.IntRange(1, 9),
              help="How many masters (an odd number tolerates (N-1)/2 failures).")
@click.option("--nodes", default=0, show_default=True, type=click.IntRange(0, 250),
              help="How many edge node agents (addresses 127.0.1.N).")
@click.option("--hollow", is_flag=True, help="Nodes run simulated pods (no Docker).")
@click.option("--node-prefix", default="n", show_default=True,
              help="Node names are PREFIX1, PREFIX2, ... (unique names keep parallel clusters' "
                   "containers apart).")
@click.option("--node-net", default=_NODE_NET, show_default=True,
              help="Node N gets the address NODE_NET.N (a /24 inside 127.0.0.0/8).")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=None,
              help="Use ports from here up (default: free ports chosen by the kernel).")
@click.option("--timeout", default=_UP_TIMEOUT_S, show_default=True, type=float,
              help="Seconds to wait for the API on every master.")
@click.option("--node-grace-period", type=float, default=None,
              help="Seconds without a Lease renewal before a node is NotReady (default 8).")
@click.option("--node-toleration-seconds", type=float, default=None,
              help="Seconds before pods of an unreachable node are evicted (default 4).")
@click.option("--service-cidr", default=LOCAL_SERVICE_CIDR, show_default=True, metavar="CIDR",
              help="Service VIP range (inside 127.0.0.0/8 keeps every VIP on this machine).")
@click.option("--proxy-mode", type=click.Choice(["auto", "nftables", "userspace", "none"]),
              default=None, help="The nodes' netproxy mode (default: auto; none for --hollow).")
def up_command(directory: str, masters: int, nodes: int, hollow: bool, node_prefix: str,
               node_net: str, base_port: int | None, timeout: float,
               node_grace_period: float | None, node_toleration_seconds: float | None,
               service_cidr: str, proxy_mode: str | None) -> None:
    """Start a local cluster in the background on loopback addresses.

    Returns once the API answers on every master. In a directory whose cluster was stopped
    with `edgectl down`, it starts the same processes again, with their data. Writes DIR/kubeconfig (every master listed:
    edgectl fails over between them, kubectl uses the first) and DIR/cluster.json.

    \b
    Examples:
      edgectl up --dir /tmp/c1 --masters 3
      edgectl up --dir /tmp/c2 --masters 3 --nodes 2 --hollow
      edgectl down --dir /tmp/c1
    """
    parts = node_net.split(".")
    if len(parts) != 3 or parts[0] != "127" or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise CommandError(f"error: --node-net {node_net!r} must look like 127.X.Y (loopback only)")
    extra = []
    if node_grace_period is not None:
        extra += ["--node-grace-period", str(node_grace_period)]
    if node_toleration_seconds is not None:
        extra += ["--node-toleration-seconds", str(node_toleration_seconds)]
    extra += ["--service-cidr", service_cidr]
    node_extra = ["--proxy-mode", proxy_mode or ("none" if hollow else "auto")]
    if node_grace_period is not None:
        from edge_agent._agent import DEFAULT_LEASE_RENEW  # (the agent's own default: no drift)

        # Four renewals per grace period (Kubernetes' ratio), so one late renewal is no outage;
        # never slower than the agent's default, which suits the default grace period.
        renew = max(0.1, min(DEFAULT_LEASE_RENEW, node_grace_period / 4))
        node_extra += ["--lease-renew", f"{renew:g}"]
    cluster = start_local_cluster(directory, masters=masters, nodes=nodes, hollow=hollow,
                                  node_prefix=node_prefix, node_net=node_net,
                                  base_port=base_port, timeout=timeout, extra_master_args=extra,
                                  extra_node_args=node_extra,
                                  progress=lambda text: click.echo(text, err=True))
    node_count = sum(1 for p in cluster.processes if p.role == "node")
    click.echo(f"cluster is up in {cluster.dir} ({len(cluster.masters())} master(s), "
               f"{node_count} node(s)).")
    click.echo("Use it with:")
    click.echo(f"  export KUBECONFIG={cluster.kubeconfig}")
    click.echo("  kubectl get namespaces")
    click.echo("  edgectl cluster status")
    click.echo(f"Stop it with: edgectl down --dir {cluster.dir}")


@click.command("down")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="The directory given to edgectl up.")
@click.option("--grace", default=_DOWN_GRACE_S, show_default=True, type=float,
              help="Seconds between SIGTERM and SIGKILL.")
@click.option("--keep-containers", is_flag=True,
              help="Leave the pods' Docker containers (default: remove them).")
def down_command(directory: str, grace: float, keep_containers: bool) -> None:
    """Stop every process `edgectl up` started in DIR (data and logs stay).

    \b
    Example:
      edgectl down --dir /tmp/c1
    """
    cluster = LocalCluster.load(directory)
    notes = stop_local_cluster(cluster, grace=grace,
                               progress=lambda text: click.echo(text, err=True))
    if not keep_containers:
        notes += remove_node_containers(cluster)
    for note in notes:
        click.echo(note, err=True)
    left = [p for p in cluster.processes if is_running(p)]
    if left:
        raise CommandError("error: still running: " + ", ".join(f"{p.name} (pid {p.pid})" for p in left))
    click.echo(f"stopped {len(cluster.processes)} process(es) of {cluster.dir}")
