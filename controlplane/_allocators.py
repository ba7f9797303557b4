"""Service virtual IPs and node ports, allocated inside the Raft transaction that writes the Service.

Every address or port a Service holds is one key of its own::

    /registry/ranges/serviceips/<ip>          -> b"<namespace>/<name>"
    /registry/ranges/servicenodeports/<port>  -> b"<namespace>/<name>"

A create or update that takes a value adds ``Compare.absent(key)`` and ``Op.put(key)`` to the
same transaction that writes the Service, and a delete (or a type change) removes the keys in
the transaction that removes the Service. So two Services can never hold one VIP, even when
masters allocate concurrently: the second transaction's compare fails, and it picks again (a
value the user asked for is a 422 instead, with Kubernetes' wording).

The range is a cluster setting kept in the store (``/registry/ranges/servicenetwork``, written
once by the first leader from ``--service-cidr``), so every master allocates from the same one.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from raftstore import Compare, Op

from . import errors

__all__ = [
    "DEFAULT_NODE_PORT_RANGE",
    "DEFAULT_SERVICE_CIDR",
    "LOCAL_SERVICE_CIDR",
    "NETWORK_KEY",
    "NODE_PORT_PREFIX",
    "SERVICE_IP_PREFIX",
    "AllocationPlan",
    "ServiceNetwork",
    "carry_allocated",
    "held_keys",
    "plan_allocations",
    "release_ops",
    "repair_allocations",
]

# Kubernetes' default --service-cluster-ip-range for IPv4: what a real cluster expects.
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
# Local clusters (edgectl up) keep VIPs on loopback so nothing leaves the machine; 127.10/16 stays
# clear of nodes (127.0.1.N, random 127.X.Y/24 test nets are chosen above .20) and of the
# scenario manifests (127.11.x.y).
LOCAL_SERVICE_CIDR = "127.10.0.0/16"
# kube-apiserver's default --service-node-port-range.
DEFAULT_NODE_PORT_RANGE = (30000, 32767)
NETWORK_KEY = "/registry/ranges/servicenetwork"
SERVICE_IP_PREFIX = "/registry/ranges/serviceips/"
NODE_PORT_PREFIX = "/registry/ranges/servicenodeports/"
# Random probes before falling back to scanning the whole range: a mostly free range answers at
# once, a nearly full one is scanned so "full" is certain.
_PROBES = 64
# Ranges up to this many addresses are enumerated outright (cheaper than probing).
_ENUMERATE_MAX = 4096
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


@dataclass(frozen=True)
class ServiceNetwork:
    """The cluster's service IP range and node-port range."""

    cidr: ipaddress.IPv4Network
    node_ports: tuple[int, int] = DEFAULT_NODE_PORT_RANGE

    @classmethod
    def parse(cls, cidr: str | None = None) -> ServiceNetwork:
        """``--service-cidr`` text (default Kubernetes' 10.96.0.0/12); ValueError if unusable."""
        text = cidr or DEFAULT_SERVICE_CIDR
        try:
            net = ipaddress.IPv4Network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"--service-cidr {text!r} is not an IPv4 network like 10.96.0.0/12: {exc}") from None
        if net.prefixlen > 28:
            raise ValueError(f"--service-cidr {text!r} is too small (at most /28)")
        if net.prefixlen < 8:
            raise ValueError(f"--service-cidr {text!r} is too large (at least /8)")
        return cls(net)

    def encode(self) -> bytes:
        return json.dumps({"serviceCIDR": str(self.cidr),
                           "nodePortRange": f"{self.node_ports[0]}-{self.node_ports[1]}"}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ServiceNetwork:
        data = json.loads(raw)
        low, high = (int(p) for p in data.get("nodePortRange", "30000-32767").split("-"))
        return cls(ipaddress.IPv4Network(data["serviceCIDR"]), (low, high))

    def ip_usable(self, ip: str) -> bool:
        """In the range, and neither its network nor its broadcast address."""
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        return addr in self.cidr and addr not in (self.cidr.network_address, self.cidr.broadcast_address)

    def node_port_usable(self, port: Any) -> bool:
        return type(port) is int and self.node_ports[0] <= port <= self.node_ports[1]


def _ip_key(ip: str) -> str:
    return SERVICE_IP_PREFIX + ip


def _port_key(port: int) -> str:
    return f"{NODE_PORT_PREFIX}{port}"


def _nth_port(first: int, i: int) -> str:
    return _port_key(first + i)


def _headless(spec: dict[str, Any]) -> bool:
    return spec.get("clusterIP") == "None" or (
        spec.get("clusterIP") in (None, "") and spec.get("clusterIPs") == ["None"])


def _wants_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type") != "ExternalName" and not _headless(spec)


def held_keys(obj: dict[str, Any] | None) -> set[str]:
    """The allocation keys a stored Service holds (its VIP and node ports)."""
    if not obj:
        return set()
    spec = obj.get("spec") or {}
    keys: set[str] = set()
    cip = spec.get("clusterIP")
    if isinstance(cip, str) and cip not in ("", "None") and spec.get("type") != "ExternalName":
        keys.add(_ip_key(cip))
    if spec.get("type") in _NODE_PORT_TYPES:
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and type(port.get("nodePort")) is int and port["nodePort"]:
                keys.add(_port_key(port["nodePort"]))
    return keys


def carry_allocated(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Update semantics (Kubernetes' patchAllocatedValues): a body that leaves out the VIP or a
    node port keeps the allocated one; a type that no longer uses node ports drops them."""
    ospec, spec = old.get("spec") or {}, new.get("spec")
    if not isinstance(spec, dict) or not isinstance(ospec, dict):
        return
    if spec.get("type") != "ExternalName" and ospec.get("type") != "ExternalName":
        if spec.get("clusterIP") in (None, "") and not spec.get("clusterIPs"):
            if ospec.get("clusterIP"):
                spec["clusterIP"] = ospec["clusterIP"]
            if ospec.get("clusterIPs"):
                spec["clusterIPs"] = list(ospec["clusterIPs"])
    ports = spec.get("ports")
    if not isinstance(ports, list):
        return
    if spec.get("type") not in _NODE_PORT_TYPES:
        for port in ports:
            if isinstance(port, dict):
                port.pop("nodePort", None)
        return
    if ospec.get("type") not in _NODE_PORT_TYPES:
        return
    previous = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                for p in ospec.get("ports") or [] if isinstance(p, dict)}
    for port in ports:
        if isinstance(port, dict) and port.get("nodePort") in (None, 0):
            kept = previous.get((port.get("port"), port.get("protocol", "TCP")))
            if kept:
                port["nodePort"] = kept


@dataclass
class AllocationPlan:
    """What a Service write adds to its transaction."""

    compares: list[Compare] = field(default_factory=list)
    ops: list[tuple] = field(default_factory=list)
    # new keys in the order their Op.get results follow the object's in the failure branch
    claimed: list[str] = field(default_factory=list)
    # keys the user asked for by value (a taken one is a 422, not a retry): key -> (field, value)
    requested: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def failure_gets(self) -> list[tuple]:
        return [Op.get(key) for key in self.claimed]

    def error_for(self, name: str, results: list[Any]) -> errors.ApiError | None:
        """The 422 for a requested value another Service took; None if a retry may succeed."""
        causes = []
        for key, kv in zip(self.claimed, results, strict=False):
            if kv is not None and key in self.requested:
                path, value = self.requested[key]
                what = "IP" if path.startswith("spec.clusterIP") else "port"
                causes.append({"reason": "FieldValueInvalid", "field": path,
                               "message": f"Invalid value: {json.dumps(value)}: provided {what} is already allocated"})
        return errors.invalid("Service", name, causes) if causes else None


def _invalid(name: str, path: str, value: Any, why: str) -> errors.ApiError:
    return errors.invalid("Service", name, [{"reason": "FieldValueInvalid", "field": path,
                                             "message": f"Invalid value: {json.dumps(value)}: {why}"}])


def _pick(candidates_size: int, nth: Callable[[int], str], taken: set[str], what: str) -> str:
    """A random free value: probe first, then scan from a random start (so "full" is certain)."""
    if candidates_size <= 0:
        raise errors.internal_error(f"failed to allocate a {what}: the range is empty")
    if candidates_size > _ENUMERATE_MAX:
        for _ in range(_PROBES):
            value = nth(random.randrange(candidates_size))
            if value not in taken:
                return value
    start = random.randrange(candidates_size)
    for i in range(candidates_size):
        value = nth((start + i) % candidates_size)
        if value not in taken:
            return value
    raise errors.internal_error(f"failed to allocate a {what}: the range is full")


async def plan_allocations(
    network: ServiceNetwork,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    taken_keys: Callable[[str], Awaitable[set[str]]],
    avoid: set[str],
) -> AllocationPlan:
    """Fill ``new``'s VIP and node ports (mutating it) and return the transaction parts.

    ``old`` is the stored Service for an update (None for a create); ``taken_keys(prefix)``
    lists the allocation keys in use (a local read is fine: the compares are the authority);
    ``avoid`` holds keys that lost a race in an earlier attempt.
    """
    name = (new.get("metadata") or {}).get("name") or ""
    owner = f"{(new.get('metadata') or {}).get('namespace')}/{name}".encode()
    spec = new.setdefault("spec", {})
    held = held_keys(old)
    plan = AllocationPlan()

    def claim(key: str, requested: tuple[str, Any] | None) -> None:
        if key in held or key in plan.claimed:
            return
        plan.claimed.append(key)
        plan.compares.append(Compare.absent(key))
        plan.ops.append(Op.put(key, owner))
        if requested is not None:
            plan.requested[key] = requested

    if _wants_ip(spec):
        cip = spec.get("clusterIP") or None
        ips = spec.get("clusterIPs") or []
        if cip is None and ips:
            cip = ips[0]
        if ips and ips[0] != cip:
            raise _invalid(name, "spec.clusterIPs[0]", ips[0], "must match `spec.clusterIP`")
        if len(ips) > 1:
            raise _invalid(name, "spec.clusterIPs", ips, "this cluster is IPv4 single-stack: one IP at most")
        if cip is not None:
            if _ip_key(cip) not in held and not network.ip_usable(cip):
                raise _invalid(name, "spec.clusterIPs[0]", cip,
                               f"provided IP is not in the valid range. The range of valid IPs is {network.cidr}")
            claim(_ip_key(cip), ("spec.clusterIPs[0]", cip))
        else:
            taken = await taken_keys(SERVICE_IP_PREFIX) | avoid
            base = int(network.cidr.network_address) + 1  # never the network address
            size = network.cidr.num_addresses - 2  # nor the broadcast one
            key = _pick(size, lambda i: _ip_key(str(ipaddress.IPv4Address(base + i))), taken, "serviceIP")
            cip = key[len(SERVICE_IP_PREFIX):]
            claim(key, None)
        spec["clusterIP"] = cip
        spec["clusterIPs"] = [cip]
        spec["ipFamilies"] = ["IPv4"]
        spec["ipFamilyPolicy"] = "SingleStack"
    elif _headless(spec) and spec.get("type") != "ExternalName":
        spec["clusterIP"] = "None"
        spec["clusterIPs"] = ["None"]

    if spec.get("type") in _NODE_PORT_TYPES:
        taken_ports: set[str] | None = None
        for i, port in enumerate(spec.get("ports") or []):
            wanted = port.get("nodePort")
            if wanted:
                if _port_key(wanted) not in held and not network.node_port_usable(wanted):
                    low, high = network.node_ports
                    raise _invalid(name, f"spec.ports[{i}].nodePort", wanted,
                                   f"provided port is not in the valid range. The range of valid ports is {low}-{high}")
                claim(_port_key(wanted), (f"spec.ports[{i}].nodePort", wanted))
                continue
            if taken_ports is None:
                taken_ports = await taken_keys(NODE_PORT_PREFIX) | avoid
            first, last = network.node_ports
            key = _pick(last - first + 1, partial(_nth_port, first), taken_ports | set(plan.claimed), "nodePort")
            port["nodePort"] = int(key[len(NODE_PORT_PREFIX):])
            claim(key, None)

    for key in sorted(held - held_keys(new)):
        plan.ops.append(Op.delete(key))
    return plan


def release_ops(old: dict[str, Any]) -> list[tuple]:
    """The deletes that free what a Service held (in the transaction that removes it)."""
    return [Op.delete(key) for key in sorted(held_keys(old))]


async def repair_allocations(store: Any) -> tuple[int, int]:
    """Make the allocation keys match the stored Services (Kubernetes' repair controllers):
    a Service holding a VIP or node port without its key (stored before allocation existed)
    gets it; a key no Service holds any more is freed. Each fix is its own transaction,
    compared against what was read, so it never races a create or delete. Returns
    (keys added, keys freed)."""
    from .codec import decode_object

    services = {kv.key: kv for kv in (await store.range("/registry/services/")).kvs}
    holders: dict[str, tuple[str, int]] = {}  # allocation key -> (service key, mod_revision)
    for key, kv in services.items():
        for held in held_keys(decode_object(kv.value)):
            holders.setdefault(held, (key, kv.mod_revision))
    allocated = {kv.key: kv for prefix in (SERVICE_IP_PREFIX, NODE_PORT_PREFIX)
                 for kv in (await store.range(prefix)).kvs}
    added = freed = 0
    for held, (service_key, revision) in holders.items():
        if held not in allocated:
            owner = service_key.removeprefix("/registry/services/").encode()
            result = await store.txn([Compare.absent(held), Compare.mod_revision(service_key, "==", revision)],
                                     [Op.put(held, owner)], [])
            added += bool(result.succeeded)
    for held, kv in allocated.items():
        if held not in holders:
            service_key = "/registry/services/" + kv.value.decode(errors="replace")
            compares = [Compare.mod_revision(held, "==", kv.mod_revision)]
            current = services.get(service_key)
            compares.append(Compare.mod_revision(service_key, "==", current.mod_revision) if current
                            else Compare.absent(service_key))
            result = await store.txn(compares, [Op.delete(held)], [])
            freed += bool(result.succeeded)
    return added, freed
