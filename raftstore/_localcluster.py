"""Replica processes on loopback for tests, the demo and the benchmark.

Each replica is ``python -m raftstore`` in its own process (real sockets, real journals, real
signals), with its data directory and log file under one base directory.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ._types import StoreUnavailable
from ._wire import ReplicaClient, open_replica_client

__all__ = ["LocalCluster", "LocalReplica", "free_ports"]

# Ports reserved for the raftstore tests and benchmark (other suites use other ranges).
PORT_RANGE = (21000, 21999)
# Python start-up, key derivation and bind take ~0.5 s; allow for a loaded machine.
_READY_TIMEOUT_S = 20.0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, port_range: tuple[int, int] = PORT_RANGE) -> list[int]:
    """``count`` ports of the range that are free right now (random start, so concurrent
    runs rarely collide)."""
    lo, hi = port_range
    start = random.randrange(lo, hi)
    found: list[int] = []
    for k in range(hi - lo):
        port = lo + (start - lo + k) % (hi - lo)
        if _port_free(port):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError(f"not enough free ports in {lo}-{hi}")


@dataclass
class LocalReplica:
    name: str
    raft_port: int
    client_port: int
    data_dir: Path
    secret_file: Path
    peers: list[str]
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable, "-m", "raftstore",
            "--name", self.name,
            "--self", self.address,
            "--data-dir", str(self.data_dir),
            "--secret-file", str(self.secret_file),
            "--client-port", str(self.client_port),
            *[a for p in self.peers if p != self.address for a in ("--peer", p)],
            *self.extra_args,
        ]  # fmt: skip
        log = open(self.log_path, "ab")
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(root)
        )
        log.close()
        self.paused = False

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is None:
            return
        if self.paused:
            self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        await trio.to_thread.run_sync(self.proc.wait)
        self.paused = False

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (clean shutdown), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.paused:
            self.resume()
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await trio.sleep(0.05)
        if self.proc.poll() is None:
            await self.kill()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    @asynccontextmanager
    async def client(self, timeout: float = _READY_TIMEOUT_S) -> AsyncIterator[ReplicaClient]:
        secret = self.secret_file.read_bytes().strip()
        async with open_replica_client("127.0.0.1", self.client_port, secret) as c:
            yield c

    async def wait_ready(self, timeout: float = _READY_TIMEOUT_S) -> None:
        deadline = trio.current_time() + timeout
        while True:
            if not self.running:
                raise RuntimeError(
                    f"replica {self.name} exited: {self.log_path.read_text()[-2000:]}"
                )
            try:
                async with self.client() as c:
                    await c.call("ping", timeout=2)
                return
            except (OSError, StoreUnavailable, trio.TooSlowError):
                if trio.current_time() > deadline:
                    raise
                await trio.sleep(0.05)

    async def call(self, op: str, *args: Any, timeout: float = 15.0) -> Any:
        """One request on a fresh connection (convenient, not fast)."""
        async with self.client() as c:
            return await c.call(op, *args, timeout=timeout)


class LocalCluster:
    """N replica processes on loopback sharing a secret, under ``base_dir``."""

    def __init__(
        self,
        base_dir: Path | str,
        size: int = 3,
        *,
        extra_args: Sequence[str] = (),
        secret: bytes | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.secret = secret or secrets.token_hex(24).encode()
        self.secret_file = self.base_dir / "secret"
        self.secret_file.write_bytes(self.secret)
        os.chmod(self.secret_file, 0o600)
        self.extra_args = list(extra_args)
        ports = free_ports(2 * size)
        self.replicas: list[LocalReplica] = []
        addresses = [f"127.0.0.1:{ports[2 * i]}" for i in range(size)]
        for i in range(size):
            self.replicas.append(
                LocalReplica(
                    name=f"n{i + 1}",
                    raft_port=ports[2 * i],
                    client_port=ports[2 * i + 1],
                    data_dir=self.base_dir / f"n{i + 1}",
                    secret_file=self.secret_file,
                    peers=list(addresses),
                    extra_args=list(self.extra_args),
                )
            )

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self.replicas]

    def new_replica(self, *, secret_file: Path | None = None) -> LocalReplica:
        """A replica (not started, not yet a member) listing every current member as peer."""
        raft_port, client_port = free_ports(2)
        name = f"n{len(self.replicas) + 1}"
        replica = LocalReplica(
            name=name,
            raft_port=raft_port,
            client_port=client_port,
            data_dir=self.base_dir / name,
            secret_file=secret_file or self.secret_file,
            peers=[*self.addresses, f"127.0.0.1:{raft_port}"],
            extra_args=list(self.extra_args),
        )
        return replica

    async def start(self) -> None:
        for r in self.replicas:
            r.start()
        for r in self.replicas:
            await r.wait_ready()

    async def stop(self) -> None:
        for r in self.replicas:
            await r.stop()

    def by_address(self, address: str) -> LocalReplica:
        for r in self.replicas:
            if r.address == address:
                return r
        raise KeyError(address)

    async def wait_leader(
        self, timeout: float = 15.0, among: Sequence[LocalReplica] | None = None
    ) -> LocalReplica:
        """The replica that reports a quorum lease (and that every live member agrees on)."""
        deadline = trio.current_time() + timeout
        candidates = list(among) if among is not None else self.replicas
        while True:
            live = [r for r in candidates if r.running and not r.paused]
            statuses = []
            for r in live:
                try:
                    statuses.append((r, await r.call("status", timeout=2)))
                except (OSError, StoreUnavailable, trio.TooSlowError):
                    pass
            leaders = [r for r, s in statuses if s["is_leader"]]
            if len(leaders) == 1:
                return leaders[0]
            if trio.current_time() > deadline:
                raise TimeoutError(f"no single leader within {timeout} s: {statuses}")
            await trio.sleep(0.05)

    async def follower(self) -> LocalReplica:
        leader = await self.wait_leader()
        return next(r for r in self.replicas if r is not leader and r.running and not r.paused)

    async def wait_converged(self, timeout: float = 20.0) -> list[tuple[int, str, int]]:
        """Wait until every running replica reports the same (revision, digest); return them."""
        deadline = trio.current_time() + timeout
        while True:
            digests: list[Any] = []
            for r in self.replicas:
                if r.running and not r.paused:
                    try:
                        digests.append(tuple(await r.call("digest", timeout=2)))
                    except (OSError, StoreUnavailable, trio.TooSlowError):
                        digests.append(None)
            if digests and None not in digests and len({d[:2] for d in digests}) == 1:
                return digests  # type: ignore[return-value]
            if trio.current_time() > deadline:
                raise TimeoutError(f"replicas did not converge: {digests}")
            await trio.sleep(0.1)


@asynccontextmanager
async def running_cluster(
    base_dir: Path | str, size: int = 3, **kwargs: Any
) -> AsyncIterator[LocalCluster]:
    cluster = LocalCluster(base_dir, size, **kwargs)
    try:
        await cluster.start()
        yield cluster
    finally:
        with trio.CancelScope(shield=True):
            for r in cluster.replicas:
                if r.proc is not None and r.proc.poll() is None:
                    await r.kill() if r.paused else await r.stop()
