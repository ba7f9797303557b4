"""The desired data plane as pure values: Services + Endpoints -> service entries.

Both modes (nftables and userspace) program the node from the same list of
:class:`ServiceEntry`, so what traffic a VIP receives is decided here, once, and
tested without touching the network.

Endpoint model (agreed with the endpoints controller): there is no overlay network, so an
Endpoints subset lists ``addresses[].ip`` = the pod's node address (``status.hostIP``) and
``ports[]`` = the host port published for the target container port. ``notReadyAddresses``
never receive traffic.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Kubernetes' default for sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).
DEFAULT_AFFINITY_TIMEOUT_S = 10800
# Kubernetes' upper bound for the same field (one day); larger values are API validation errors.
MAX_AFFINITY_TIMEOUT_S = 86400
# Only TCP and UDP are proxied; SCTP needs kernel modules an edge node rarely has.
SUPPORTED_PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True, slots=True, order=True)
class Backend:
    """One ready endpoint: the node address and host port that reach a pod's container port."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One service port as the data plane sees it.

    ``vip`` is None for a NodePort-only entry whose cluster IP is not allocated yet;
    ``affinity_timeout`` is None unless ``sessionAffinity: ClientIP``.
    """

    namespace: str
    name: str
    port_name: str
    protocol: str  # "TCP" | "UDP"
    vip: str | None
    port: int
    node_port: int | None
    backends: tuple[Backend, ...]
    affinity_timeout: int | None = None

    @property
    def key(self) -> str:
        """Stable identity of the service port across updates (namespace/name:port)."""
        return f"{self.namespace}/{self.name}:{self.port_name or self.port}"


class _Skip(Exception):
    """An object (or part of one) the data plane cannot use; logged, never raised to callers."""


def _ident(obj: Mapping) -> tuple[str, str]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise _Skip("no metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise _Skip("no metadata.name")
    namespace = meta.get("namespace") or "default"
    if not isinstance(namespace, str):
        raise _Skip("metadata.namespace is not a string")
    return namespace, name


def _port_number(value: object, what: str) -> int:
    # bool is an int in Python; a port of True is a bug in the object, not port 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _Skip(f"{what} {value!r} is not a port number")
    return value


def _ipv4(value: object, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))  # type: ignore[arg-type]
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise _Skip(f"{what} {value!r} is not an IPv4 address") from None


def _affinity(spec: Mapping) -> int | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    config = spec.get("sessionAffinityConfig") or {}
    timeout = ((config.get("clientIP") or {}) if isinstance(config, Mapping) else {}).get(
        "timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT_S
    )
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        return DEFAULT_AFFINITY_TIMEOUT_S
    return min(max(timeout, 1), MAX_AFFINITY_TIMEOUT_S)


def _ready_backends(endpoints: Mapping | None, port_name: str, protocol: str) -> tuple[Backend, ...]:
    """Ready addresses x the endpoint port named like the service port (Kubernetes' rule)."""
    if endpoints is None:
        return ()
    found: set[Backend] = set()
    subsets = endpoints.get("subsets") or []
    if not isinstance(subsets, list):
        return ()
    for subset in subsets:
        if not isinstance(subset, Mapping):
            continue
        ports = [
            p
            for p in (subset.get("ports") or [])
            if isinstance(p, Mapping)
            and (p.get("name") or "") == port_name
            and (p.get("protocol") or "TCP") == protocol
        ]
        # notReadyAddresses are deliberately not read: they must receive no traffic.
        for address in subset.get("addresses") or []:
            if not isinstance(address, Mapping):
                continue
            for port in ports:
                try:
                    found.add(Backend(_ipv4(address.get("ip"), "endpoint ip"),
                                      _port_number(port.get("port"), "endpoint port")))
                except _Skip as exc:
                    log.warning("endpoints %s: %s", _safe_ident(endpoints), exc)
    return tuple(sorted(found, key=lambda b: (ipaddress.IPv4Address(b.ip), b.port)))


def _safe_ident(obj: Mapping) -> str:
    try:
        return "/".join(_ident(obj))
    except _Skip:
        return "<unnamed>"


def _service_entries(service: Mapping, endpoints: Mapping | None) -> list[ServiceEntry]:
    namespace, name = _ident(service)
    spec = service.get("spec")
    if not isinstance(spec, Mapping):
        raise _Skip("no spec")
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        return []  # a DNS alias: nothing for the data plane to do
    cluster_ip = spec.get("clusterIP")
    if cluster_ip == "None":
        return []  # headless: clients resolve endpoints themselves, no VIP and no rules
    vip = _ipv4(cluster_ip, "spec.clusterIP") if cluster_ip else None
    with_node_ports = kind in ("NodePort", "LoadBalancer")
    affinity = _affinity(spec)
    entries = []
    for port in spec.get("ports") or []:
        if not isinstance(port, Mapping):
            raise _Skip("spec.ports[] entry is not an object")
        protocol = port.get("protocol") or "TCP"
        if protocol not in SUPPORTED_PROTOCOLS:
            log.warning("service %s/%s: protocol %r is not proxied", namespace, name, protocol)
            continue
        number = _port_number(port.get("port"), "spec.ports[].port")
        node_port = None
        if with_node_ports and port.get("nodePort"):
            node_port = _port_number(port.get("nodePort"), "spec.ports[].nodePort")
        if vip is None and node_port is None:
            continue  # nothing to listen on yet (VIP not allocated)
        port_name = port.get("name") or ""
        entries.append(
            ServiceEntry(
                namespace=namespace,
                name=name,
                port_name=port_name,
                protocol=protocol,
                vip=vip,
                port=number,
                node_port=node_port,
                backends=_ready_backends(endpoints, port_name, protocol),
                affinity_timeout=affinity,
            )
        )
    return entries


def desired_entries(services: Iterable[Mapping], endpoints: Iterable[Mapping]) -> list[ServiceEntry]:
    """Every service port the node must serve, with its ready backends, in a stable order.

    Objects the data plane cannot use (no name, a malformed clusterIP, a port out of range)
    are logged and left out, so one bad object never stops the others from being served.
    """
    by_name: dict[tuple[str, str], Mapping] = {}
    for ep in endpoints:
        try:
            by_name[_ident(ep)] = ep
        except _Skip as exc:
            log.warning("endpoints object ignored: %s", exc)
    entries: list[ServiceEntry] = []
    for service in services:
        try:
            ident = _ident(service)
            entries.extend(_service_entries(service, by_name.get(ident)))
        except _Skip as exc:
            log.warning("service %s ignored: %s", _safe_ident(service), exc)
    entries.sort(key=lambda e: (e.namespace, e.name, e.port, e.protocol, e.port_name))
    return entries
