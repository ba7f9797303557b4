"""A master's data directory, and the addresses and secrets a master is configured with.

Layout of ``D`` (``--data-dir``)::

    D/raft/          the replica's journal and snapshots
    D/secret         the cluster secret (authenticates and encrypts Raft traffic), mode 0600
    D/admin-token    the admin bearer token, mode 0600
    D/kubeconfig     a kubeconfig for the admin (all masters known when written)
    D/master.json    name, raft address, api address, peers: what `master start` needs again
    D/ca.crt, ca.key the cluster CA (key 0600); D/tls.crt, tls.key: this master's serving cert
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "MasterError",
    "MasterSpec",
    "MasterLayout",
    "new_secret",
    "new_token",
    "parse_host_port",
    "read_private",
    "write_private",
]

# 32 random bytes: the cluster secret and the admin token are both 256-bit bearer secrets.
_SECRET_BYTES = 32


class MasterError(Exception):
    """A master cannot start as configured; the message says what to change."""


def new_secret() -> str:
    return secrets.token_hex(_SECRET_BYTES)


def new_token() -> str:
    return secrets.token_urlsafe(_SECRET_BYTES)


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """``H:P`` (or ``[v6]:P``) -> (host, port), with a clear error naming the flag."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit():
        raise MasterError(f"{what} must be HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise MasterError(f"{what}: port {port} is out of range 1-65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise MasterError(f"{what}: {host!r} is not an IP address") from None
    return host, port


def write_private(path: pathlib.Path, text: str) -> None:
    """Write a secret readable only by its owner (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    os.replace(tmp, path)


def read_private(path: pathlib.Path | str, what: str) -> str:
    try:
        text = pathlib.Path(path).read_text().strip()
    except FileNotFoundError:
        raise MasterError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise MasterError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if not text:
        raise MasterError(f"{what} file {path} is empty")
    return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class MasterSpec:
    """What identifies a master: its name, where it listens, and the other members' Raft addresses."""

    name: str
    raft_addr: str
    api_addr: str
    peers: list[str] = field(default_factory=list)
    # Serve the API from an in-process MemoryStore (single master, nothing persisted; dev only).
    dev_memory_store: bool = False
    # Serve HTTPS with a certificate from the cluster CA (kubectl sends tokens only over TLS).
    tls: bool = True
    # Node lifecycle settings for the leader duties (None: the controller's defaults); every
    # master of a cluster should be given the same values.
    node_grace_period: float | None = None
    node_toleration_seconds: float | None = None
    # Service VIP range (--service-cidr); the first leader stores it for the whole cluster, so
    # only the first master's value matters (None: Kubernetes' default 10.96.0.0/12).
    service_cidr: str | None = None
    # Raft log entries between two snapshots of the store (None: the store's default).
    snapshot_count: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, source: str) -> MasterSpec:
        try:
            data: Any = json.loads(text)
            return cls(
                name=str(data["name"]),
                raft_addr=str(data["raft_addr"]),
                api_addr=str(data["api_addr"]),
                peers=[str(p) for p in data.get("peers", [])],
                dev_memory_store=bool(data.get("dev_memory_store", False)),
                tls=bool(data.get("tls", True)),
                node_grace_period=_opt_float(data.get("node_grace_period")),
                node_toleration_seconds=_opt_float(data.get("node_toleration_seconds")),
                service_cidr=data.get("service_cidr") or None,
                snapshot_count=(int(data["snapshot_count"])
                                if data.get("snapshot_count") is not None else None),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise MasterError(f"{source} is not a valid master.json: {exc}") from None

    def validate(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-." for c in self.name):
            raise MasterError(f"--name {self.name!r}: use letters, digits, '-' and '.'")
        parse_host_port(self.raft_addr, "--raft-addr")
        parse_host_port(self.api_addr, "--api-addr")
        for peer in self.peers:
            parse_host_port(peer, "--peer")
        if self.raft_addr in self.peers:
            raise MasterError(f"--peer {self.raft_addr} is this master's own --raft-addr")
        if self.raft_addr == self.api_addr:
            raise MasterError("--raft-addr and --api-addr must differ")
        if not self.tls and not _is_loopback(parse_host_port(self.api_addr, "--api-addr")[0]):
            # Bearer tokens in clear text must never leave the machine.
            raise MasterError(f"--insecure-http serves tokens in clear text: only on a loopback "
                              f"--api-addr (127.0.0.1, ::1), not {self.api_addr}")
        for flag, value in (("--node-grace-period", self.node_grace_period),
                            ("--node-toleration-seconds", self.node_toleration_seconds)):
            if value is not None and not 0 < value <= 3600:
                raise MasterError(f"{flag} must be between 0 and 3600 seconds, got {value}")
        if self.snapshot_count is not None and not 100 <= self.snapshot_count <= 10_000_000:
            # Fewer than 100 entries would snapshot (fork and write the whole state) all the time.
            raise MasterError(f"--snapshot-count must be between 100 and 10000000, "
                              f"got {self.snapshot_count}")
        if self.service_cidr is not None:
            from ._allocators import ServiceNetwork

            try:
                ServiceNetwork.parse(self.service_cidr)
            except ValueError as exc:
                raise MasterError(str(exc)) from None


class MasterLayout:
    """Paths inside a master's data directory."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = pathlib.Path(data_dir).absolute()
        self.raft = self.root / "raft"
        self.secret = self.root / "secret"
        self.admin_token = self.root / "admin-token"
        self.kubeconfig = self.root / "kubeconfig"
        self.spec = self.root / "master.json"
        self.ca_cert = self.root / "ca.crt"
        self.ca_key = self.root / "ca.key"
        self.tls_cert = self.root / "tls.crt"
        self.tls_key = self.root / "tls.key"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # it holds the cluster secret and the Raft journal
        self.raft.mkdir(exist_ok=True)

    def has_state(self) -> bool:
        return self.raft.is_dir() and any(self.raft.iterdir())

    def write_spec(self, spec: MasterSpec) -> None:
        tmp = self.spec.with_name("master.json.tmp")
        tmp.write_text(spec.to_json() + "\n")
        os.replace(tmp, self.spec)

    def read_spec(self) -> MasterSpec | None:
        try:
            text = self.spec.read_text()
        except FileNotFoundError:
            return None
        return MasterSpec.from_json(text, str(self.spec))
