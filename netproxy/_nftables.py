"""nftables mode: one table of our own, replaced atomically with ``nft -f`` on every change.

Layout of the rendered table (``ip`` family, name ``edgeplane`` by default)::

    map services      VIP . proto . port and nodeAddress . proto . nodePort -> goto svc-<id>
    chain svc-<id>    affinity lookups, then numgen random mod N vmap -> goto ep-<id>
    chain ep-<id>     (affinity set update), masquerade mark, dnat to backend ip:port
    set no-endpoints  service addresses with no ready endpoint: rejected, not black-holed
    hooks             nat prerouting (containers, other hosts) and nat output (this host:
                      loopback VIPs and endpoints need the output hook, prerouting never
                      sees locally generated packets); postrouting masquerades forwarded
                      DNAT traffic; filter hooks reject no-endpoint services and drop
                      packets to 127/8 from other interfaces that we did not DNAT.

The file first creates the table (a no-op when it exists), then deletes it, then defines it
in full: ``nft -f`` applies a file as one transaction, so the kernel goes from the old rules to
the new ones with no moment without rules, and the same file works on a fresh node.

Affinity (sessionAffinity ClientIP) follows kube-proxy's nftables mode: one dynamic set per
endpoint holding client addresses with a timeout. Replacing the table would forget the sets,
so their live elements are read back (``nft -j list``) and written into the new table with
their remaining lifetime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import trio

from ._model import Backend, ServiceEntry

log = logging.getLogger(__name__)

# The table kube-proxy-like tools conventionally name after themselves; several proxiers on
# one machine (local clusters run as root) pass their own name so they never fight.
DEFAULT_TABLE = "edgeplane"
# The bit kube-proxy uses to mark connections to masquerade; Docker does not use packet marks.
MASQUERADE_MARK = 0x4000
# nat output must run at the dstnat priority; nft 1.0.6 only accepts the keyword on prerouting.
NAT_DSTNAT_PRIORITY = -100
# Before nat (-100), so a no-endpoint VIP is rejected before anything rewrites its address.
FILTER_PRIORITY = -110
# An nft run that takes longer than this is stuck (a held netlink lock); give up and retry.
NFT_TIMEOUT_S = 10.0


class NftablesError(Exception):
    """``nft`` refused a ruleset or is missing."""


# nft identifiers: a letter, then letters, digits, '-' or '_' (kept short and unquoted).
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def valid_table_name(name: str) -> bool:
    """Whether ``name`` can be used as our nftables table name without quoting."""
    return _TABLE_NAME.fullmatch(name) is not None


def _short_hash(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:12]


def _svc_chain(entry: ServiceEntry) -> str:
    return f"svc-{_short_hash(entry.key, entry.protocol)}"


def _ep_id(entry: ServiceEntry, backend: Backend) -> str:
    # Stable per (service port, backend), so an affinity set survives unrelated changes.
    return _short_hash(entry.key, entry.protocol, backend)


def affinity_set_name(entry: ServiceEntry, backend: Backend) -> str:
    """Name of the client-address set that pins clients of ``entry`` to ``backend``."""
    return f"aff-{_ep_id(entry, backend)}"


@dataclass(frozen=True, slots=True)
class AffinityElement:
    """A client address still pinned to an endpoint, with the seconds it has left."""

    client: str
    expires_s: int


def _elements(items: Iterable[str]) -> str:
    items = list(items)
    return f"elements = {{ {', '.join(items)} }}" if items else ""


def render_ruleset(
    entries: Sequence[ServiceEntry],
    node_addresses: Sequence[str] = (),
    *,
    table: str = DEFAULT_TABLE,
    affinity: dict[str, list[AffinityElement]] | None = None,
) -> str:
    """The complete ``nft -f`` input that makes ``table`` serve ``entries``.

    ``node_addresses`` are the addresses node ports answer on. ``affinity`` carries live
    elements of affinity sets over from the table being replaced (set name -> elements).
    Two entries claiming the same address, protocol and port: the first one (in the sorted
    order of :func:`desired_entries`) wins and the other is logged.
    """
    affinity = affinity or {}
    proto_of = {"TCP": "tcp", "UDP": "udp"}
    service_map: dict[str, str] = {}  # "addr . proto . port" -> chain
    no_endpoints: list[str] = []
    taken: set[str] = set()  # every address some entry already claimed, served or rejected
    chains: list[str] = []
    sets: list[str] = []

    for entry in entries:
        proto = proto_of[entry.protocol]
        chain = _svc_chain(entry)
        addresses = []
        if entry.vip is not None:
            addresses.append(f"{entry.vip} . {proto} . {entry.port}")
        if entry.node_port is not None:
            addresses.extend(f"{addr} . {proto} . {entry.node_port}" for addr in node_addresses)
        claimed = []
        for address in addresses:
            if address in taken:
                log.warning("%s: %s is already served by another service", entry.key, address)
                continue
            claimed.append(address)
            taken.add(address)
        if not claimed:
            continue
        if not entry.backends:
            no_endpoints.extend(claimed)
            continue
        for address in claimed:
            service_map[address] = chain

        ep_chains = []
        body = [f'comment "{entry.key}/{entry.protocol}"']
        for backend in entry.backends:
            ep = f"ep-{_ep_id(entry, backend)}"
            ep_chains.append(ep)
            ep_body = []
            if entry.affinity_timeout is not None:
                aff = affinity_set_name(entry, backend)
                carried = [
                    f"{e.client} expires {e.expires_s}s"
                    for e in affinity.get(aff, [])
                    if 0 < e.expires_s <= entry.affinity_timeout
                ]
                sets.append(
                    f"set {aff} {{ type ipv4_addr; flags dynamic,timeout; "
                    f"timeout {entry.affinity_timeout}s; {_elements(carried)} }}"
                )
                body.append(f"ip saddr @{aff} goto {ep}")
                ep_body.append(f"update @{aff} {{ ip saddr }}")
            ep_body.append(f"meta mark set meta mark | {MASQUERADE_MARK:#x}")
            ep_body.append(f"meta l4proto {proto} dnat to {backend.ip}:{backend.port}")
            chains.append(f"chain {ep} {{\n" + "".join(f"    {r}\n" for r in ep_body) + "  }")
        spread = ", ".join(f"{i} : goto {ep}" for i, ep in enumerate(ep_chains))
        body.append(f"numgen random mod {len(ep_chains)} vmap {{ {spread} }}")
        chains.append(f"chain {chain} {{\n" + "".join(f"    {r}\n" for r in body) + "  }")

    lookup = "ip daddr . meta l4proto . th dport vmap @services"
    reject = "ip daddr . meta l4proto . th dport @no-endpoints reject"
    lines = [
        f"table ip {table} {{}}",
        f"delete table ip {table}",
        f"table ip {table} {{",
        "  map services { type ipv4_addr . inet_proto . inet_service : verdict; "
        + _elements(f"{a} : goto {c}" for a, c in service_map.items())
        + " }",
        "  set no-endpoints { type ipv4_addr . inet_proto . inet_service; "
        + _elements(no_endpoints)
        + " }",
        *(f"  {s}" for s in sets),
        *(f"  {c}" for c in chains),
        "  chain nat-prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        f"    {lookup}",
        "  }",
        "  chain nat-output {",
        f"    type nat hook output priority {NAT_DSTNAT_PRIORITY}; policy accept;",
        f"    {lookup}",
        "  }",
        "  chain nat-postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        # Forwarded DNAT traffic (a container reaching an endpoint on another node) must come
        # back through this node; locally delivered traffic keeps its source address.
        f'    meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} oifname != "lo" masquerade',
        "  }",
        "  chain filter-input {",
        f"    type filter hook input priority {FILTER_PRIORITY}; policy accept;",
        # route_localnet lets 127/8 arrive from other interfaces; only our DNAT may use that.
        '    iifname != "lo" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop',
        f"    {reject}",
        "  }",
        "  chain filter-forward {",
        f"    type filter hook forward priority {FILTER_PRIORITY}; policy accept;",
        f"    {reject}",
        "  }",
        "  chain filter-output {",
        f"    type filter hook output priority {FILTER_PRIORITY}; policy accept;",
        f"    {reject}",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def nft_available() -> bool:
    """True when we are root and the kernel accepts an nftables table from ``nft``."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        return False
    try:
        # --check parses and validates in the kernel without committing anything.
        done = subprocess.run(
            ["nft", "--check", "-f", "-"],
            input=f"table ip {DEFAULT_TABLE}-probe {{}}\n",
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


async def run_nft(args: Sequence[str], stdin: str | None = None) -> str:
    """Run ``nft`` and return its stdout; raise :class:`NftablesError` with its message."""
    try:
        with trio.fail_after(NFT_TIMEOUT_S):
            done = await trio.run_process(
                ["nft", *args],
                stdin=stdin.encode() if stdin is not None else b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    except (OSError, trio.TooSlowError) as exc:
        raise NftablesError(f"nft {' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        raise NftablesError(f"nft {' '.join(args)}: {done.stderr.decode().strip()}")
    return done.stdout.decode()


async def read_affinity(table: str) -> dict[str, list[AffinityElement]]:
    """Live elements of the affinity sets in ``table`` (empty when the table does not exist)."""
    try:
        out = await run_nft(["-j", "list", "table", "ip", table])
    except NftablesError:
        return {}
    found: dict[str, list[AffinityElement]] = {}
    for item in json.loads(out).get("nftables", []):
        nft_set = item.get("set")
        if not nft_set or not nft_set.get("name", "").startswith("aff-"):
            continue
        elements = []
        for elem in nft_set.get("elem", []):
            inner = elem.get("elem", elem) if isinstance(elem, dict) else {"val": elem}
            value, expires = inner.get("val"), inner.get("expires")
            if isinstance(value, str) and isinstance(expires, int):
                elements.append(AffinityElement(value, expires))
        found[nft_set["name"]] = elements
    return found


class NftablesProxier:
    """Programs one nftables table; :meth:`sync` replaces it, :meth:`remove` deletes it."""

    mode = "nftables"

    def __init__(
        self,
        node_addresses: Sequence[str] = (),
        *,
        table: str = DEFAULT_TABLE,
        localnet_interfaces: Sequence[str] = ("docker0",),
    ) -> None:
        self.node_addresses = list(node_addresses)
        self.table = table
        self.localnet_interfaces = list(localnet_interfaces)
        self._saved_localnet: dict[str, str] = {}
        self.last_ruleset: str | None = None

    async def sync(self, entries: Sequence[ServiceEntry]) -> None:
        """Replace the table with rules for ``entries`` (one kernel transaction)."""
        affinity = {}
        if any(e.affinity_timeout is not None for e in entries):
            affinity = await read_affinity(self.table)
        ruleset = render_ruleset(
            entries, self.node_addresses, table=self.table, affinity=affinity
        )
        if any(b.ip.startswith("127.") for e in entries for b in e.backends):
            self._enable_route_localnet()
        await run_nft(["-f", "-"], stdin=ruleset)
        self.last_ruleset = ruleset

    async def remove(self) -> None:
        """Delete our table (absent already is fine) and restore route_localnet.

        route_localnet stays on while another proxier's table (``edgeplane*``) remains: the
        agents of a local cluster share docker0, and the last one out restores it.
        """
        await run_nft(["-f", "-"], stdin=f"table ip {self.table} {{}}\ndelete table ip {self.table}\n")
        tables = await run_nft(["list", "tables", "ip"])
        if not any(line.split()[-1].startswith(DEFAULT_TABLE) for line in tables.splitlines()
                   if line.strip()):
            self._restore_route_localnet()
        self._saved_localnet.clear()

    def _enable_route_localnet(self) -> None:
        # The kernel drops packets from a container (docker0) to a 127/8 address as martians
        # unless route_localnet is set on the interface they arrive on; endpoints in a local
        # cluster are node addresses in 127/8, so DNAT from docker0 needs it.
        for name in self.localnet_interfaces:
            path = f"/proc/sys/net/ipv4/conf/{name}/route_localnet"
            if name in self._saved_localnet or not os.path.exists(path):
                continue
            try:
                with open(path) as f:
                    self._saved_localnet[name] = f.read().strip()
                with open(path, "w") as f:
                    f.write("1")
            except OSError as exc:
                log.warning("cannot set route_localnet on %s: %s", name, exc)

    def _restore_route_localnet(self) -> None:
        for name, value in self._saved_localnet.items():
            try:
                with open(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "w") as f:
                    f.write(value)
            except OSError:
                pass  # the interface went away with its setting
        self._saved_localnet.clear()
