"""nftables mode: rendering (pure) and real rules in the kernel with real traffic (root).

Every test that touches the kernel uses a table named after the test process and deletes it
(and any network namespace it made) even when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netproxy import ProxyState, desired_entries, render_ruleset, serve_proxy
from netproxy._nftables import AffinityElement, affinity_set_name
from netproxy.testing import endpoints_object, http_get, service_object, udp_request

VIP = "127.10.1.1"


def nft(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], capture_output=True, text=True, check=check)


def table_exists(name: str) -> bool:
    return nft("list", "table", "ip", name, check=False).returncode == 0


@pytest.fixture
def table() -> Iterator[str]:
    name = f"edgeplane-test-{os.getpid()}"
    yield name
    subprocess.run(["nft", "-f", "-"], input=f"table ip {name} {{}}\ndelete table ip {name}\n",
                   text=True, capture_output=True)


# -- rendering (pure) ---------------------------------------------------------------------------

def three_backend_entries(**svc):
    service = service_object("web", VIP, [("http", 80, "TCP", *svc.pop("node_port", ()))], **svc)
    eps = endpoints_object("web", [("127.0.1.1", 24001), ("127.0.1.2", 24002), ("127.0.1.3", 24003)],
                           port_name="http")
    return desired_entries([service], [eps])


def test_render_spreads_vip_over_endpoints_with_numgen() -> None:
    text = render_ruleset(three_backend_entries(), table="t")
    # Create-then-delete-then-define: one transaction that also works when the table is absent.
    assert text.startswith("table ip t {}\ndelete table ip t\ntable ip t {\n")
    assert f"{VIP} . tcp . 80 : goto svc-" in text
    assert "numgen random mod 3 vmap { 0 : goto ep-" in text
    for port in (24001, 24002, 24003):
        assert f"dnat to 127.0.1.{port - 24000}:{port}" in text
    assert "type nat hook output" in text and "type nat hook prerouting" in text


def test_render_node_ports_on_every_node_address() -> None:
    text = render_ruleset(three_backend_entries(type="NodePort", node_port=(30080,)),
                          ["127.0.1.1", "127.0.1.2"], table="t")
    assert "127.0.1.1 . tcp . 30080 : goto svc-" in text
    assert "127.0.1.2 . tcp . 30080 : goto svc-" in text


def test_render_service_without_endpoints_is_rejected_not_dnatted() -> None:
    entries = desired_entries([service_object("web", VIP, [("", 80, "TCP")])], [])
    text = render_ruleset(entries, table="t")
    assert f"set no-endpoints {{ type ipv4_addr . inet_proto . inet_service; elements = {{ {VIP} . tcp . 80 }}" in text
    assert "goto svc-" not in text


def test_render_first_claim_of_an_address_wins() -> None:
    a = service_object("a", VIP, [("", 80, "TCP")])
    b = service_object("b", VIP, [("", 80, "TCP")])
    eps = [endpoints_object("a", [("127.0.1.1", 24001)]), endpoints_object("b", [("127.0.1.2", 24002)])]
    text = render_ruleset(desired_entries([a, b], eps), table="t")
    assert text.count(f"{VIP} . tcp . 80 :") == 1
    assert "127.0.1.1:24001" in text and "127.0.1.2:24002" not in text


def test_render_affinity_sets_carry_live_clients_over() -> None:
    entries = three_backend_entries(affinity_timeout=600)
    first = entries[0].backends[0]
    name = affinity_set_name(entries[0], first)
    text = render_ruleset(entries, table="t",
                          affinity={name: [AffinityElement("127.0.2.9", 300)]})
    assert f"set {name} {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; elements = {{ 127.0.2.9 expires 300s }} }}" in text
    assert f"ip saddr @{name} goto ep-" in text
    assert f"update @{name} {{ ip saddr }}" in text


# -- real kernel rules (root) -------------------------------------------------------------------

def web_state(backends, port: int, **svc) -> ProxyState:
    return ProxyState(
        [service_object("web", VIP, [("http", port, "TCP", *svc.pop("node_port", ()))], **svc)],
        [endpoints_object("web", [(b.ip, b.port) for b in backends], port_name="http")],
    )


@pytest.mark.root
def test_rendered_ruleset_is_accepted_by_the_kernel(table) -> None:
    entries = three_backend_entries(type="NodePort", node_port=(30080,), affinity_timeout=600)
    entries += desired_entries([service_object("empty", "127.10.1.2", [("", 53, "UDP")])], [])
    text = render_ruleset(entries, ["127.0.1.1"], table=table)
    subprocess.run(["nft", "--check", "-f", "-"], input=text, text=True, check=True,
                   capture_output=True)


@pytest.mark.root
async def test_host_traffic_to_vip_reaches_every_endpoint_evenly(table, http_backend) -> None:
    backends = [http_backend(f"127.0.1.{i}", 24200 + i) for i in (1, 2, 3)]
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_proxy, web_state(backends, 24210),
                                             mode="nftables", table=table))
        assert handle.mode == "nftables" and table_exists(table)
        seen = Counter([await http_get(VIP, 24210) for _ in range(300)])
        assert set(seen) == {b.identity for b in backends}
        # Random spread: 100 expected each; 60 is > 5 standard deviations below.
        assert min(seen.values()) >= 60, seen
        nursery.cancel_scope.cancel()
    assert not table_exists(table), "the table must be removed on clean shutdown"


@pytest.mark.root
async def test_start_replaces_a_leftover_table(table, http_backend) -> None:
    backend = http_backend("127.0.1.1", 24221)
    # A previous run crashed and left a rule sending the VIP nowhere useful.
    subprocess.run(["nft", "-f", "-"], text=True, check=True, input=(
        f"table ip {table} {{\n chain x {{\n type nat hook output priority -100; policy accept;\n"
        f"  ip daddr {VIP} tcp dport 24222 dnat to 127.0.1.1:24999\n }}\n}}\n"))
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, web_state([backend], 24222), mode="nftables",
                                    table=table))
        assert "chain x" not in nft("list", "table", "ip", table).stdout
        assert await http_get(VIP, 24222) == backend.identity
        nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_endpoint_change_reaches_traffic_within_200ms(table, http_backend) -> None:
    old, new = http_backend("127.0.1.1", 24231), http_backend("127.0.1.2", 24232)
    state = web_state([old], 24233)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, state, mode="nftables", table=table))
        assert await http_get(VIP, 24233) == old.identity
        changed = time.monotonic()
        state.set_endpoints([endpoints_object("web", [(new.ip, new.port)], port_name="http")])
        while await http_get(VIP, 24233) != new.identity:
            pass
        latency = time.monotonic() - changed
        assert latency < 0.2, f"rule update took {latency * 1000:.0f} ms"
        assert {await http_get(VIP, 24233) for _ in range(10)} == {new.identity}
        nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_node_port_and_no_endpoint_reject(table, http_backend) -> None:
    backend = http_backend("127.0.1.1", 24241)
    state = web_state([backend], 24242, type="NodePort", node_port=(24642,))
    state.set_services(state.services + [service_object("empty", "127.10.1.2", [("", 24243, "TCP")])])
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, state, mode="nftables", table=table,
                                    node_addresses=["127.0.1.21", "127.0.1.22"]))
        for node in ("127.0.1.21", "127.0.1.22"):
            assert await http_get(node, 24642) == backend.identity
        started = time.monotonic()
        with pytest.raises(OSError):
            await http_get("127.10.1.2", 24243)
        assert time.monotonic() - started < 0.5  # rejected, not black-holed
        nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_udp_vip(table, udp_backend) -> None:
    backends = [udp_backend("127.0.1.1", 24251), udp_backend("127.0.1.2", 24252)]
    state = ProxyState([service_object("dns", VIP, [("dns", 24253, "UDP")])],
                       [endpoints_object("dns", [(b.ip, b.port) for b in backends],
                                         port_name="dns", protocol="UDP")])
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, state, mode="nftables", table=table))
        seen = set()
        for i in range(40):
            who, _, echoed = (await udp_request(VIP, 24253, b"q%d" % i)).partition(b" ")
            assert echoed == b"q%d" % i
            seen.add(who.decode())
        assert seen == {b.identity for b in backends}
        nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_client_ip_affinity_survives_rule_updates(table, http_backend) -> None:
    backends = [http_backend(f"127.0.1.{i}", 24260 + i) for i in (1, 2, 3)]
    state = web_state(backends, 24264, affinity_timeout=600)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_proxy, state, mode="nftables", table=table))
        pinned = {}
        for client in ("127.0.2.1", "127.0.2.2", "127.0.2.3", "127.0.2.4", "127.0.2.5"):
            seen = {await http_get(VIP, 24264, source=client) for _ in range(8)}
            assert len(seen) == 1, f"{client} was spread over {seen}"
            pinned[client] = seen.pop()
        # An unrelated change replaces the whole table: the pins are carried over.
        state.set_services(state.services + [service_object("other", "127.10.1.9", [("", 1, "TCP")])])
        await handle.wait_synced()
        for client, backend in pinned.items():
            assert await http_get(VIP, 24264, source=client) == backend
        nursery.cancel_scope.cancel()


NETNS_SCRIPT = """
import sys, urllib.request
for url in sys.argv[1:]:
    print(urllib.request.urlopen(url, timeout=2).read().decode())
"""


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    """A network namespace joined to the host by a veth pair: (namespace, host interface)."""
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"np{tag}", f"nph{tag}", f"npn{tag}"
    try:
        for cmd in (
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns],
            ["ip", "addr", "add", "10.250.0.1/30", "dev", host_if],
            ["ip", "link", "set", host_if, "up"],
            ["ip", "-n", ns, "addr", "add", "10.250.0.2/30", "dev", ns_if],
            ["ip", "-n", ns, "link", "set", ns_if, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            # Only the test's service range goes to the host, nothing else leaves the namespace.
            ["ip", "-n", ns, "route", "add", "10.97.0.0/16", "via", "10.250.0.1"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)
        # The host forwards (Docker turns ip_forward on): without our DNAT, packets to the test
        # service range must die here rather than leave the machine.
        subprocess.run(["ip", "route", "replace", "blackhole", "10.97.0.0/16"], check=True)
        yield ns, host_if
    finally:
        subprocess.run(["ip", "route", "del", "blackhole", "10.97.0.0/16"], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.root
async def test_traffic_from_a_network_namespace(table, netns, http_backend) -> None:
    """Containers reach VIPs through prerouting; endpoints in 127/8 need route_localnet.

    Inside a namespace 127/8 is the namespace's own loopback, so this test gives the service
    a VIP outside it (10.97.0.0/16) and the node a veth address for the NodePort.
    """
    ns, host_if = netns
    backends = [http_backend("127.0.1.1", 24271), http_backend("127.0.1.2", 24272)]
    state = ProxyState(
        [service_object("web", "10.97.0.1", [("http", 24273, "TCP", 24673)], type="NodePort")],
        [endpoints_object("web", [(b.ip, b.port) for b in backends], port_name="http")],
    )
    localnet = f"/proc/sys/net/ipv4/conf/{host_if}/route_localnet"
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_proxy, state, mode="nftables", table=table,
                                    node_addresses=["10.250.0.1"], localnet_interfaces=[host_if]))
        assert open(localnet).read().strip() == "1"
        urls = ["http://10.97.0.1:24273/"] * 10 + ["http://10.250.0.1:24673/"] * 10
        done = await trio.run_process(
            ["ip", "netns", "exec", ns, sys.executable, "-c", NETNS_SCRIPT, *urls],
            capture_stdout=True, capture_stderr=True, check=False)
        assert done.returncode == 0, done.stderr.decode()
        answers = done.stdout.decode().split()
        assert len(answers) == 20 and set(answers) == {b.identity for b in backends}
        nursery.cancel_scope.cancel()
    # Restored unless another proxier's table remains (the agents of any local cluster running
    # on this machine meanwhile): then it stays on for them, by design.
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if not any(t.startswith("table ip edgeplane") for t in tables.splitlines()):
        assert open(localnet).read().strip() == "0", "route_localnet is restored on shutdown"


@pytest.mark.root
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_desired_state_renders_a_ruleset_the_kernel_accepts(table, data) -> None:
    """Property: whatever Services/Endpoints say (clashing addresses, empty services, affinity,
    node ports), the rendered file is one valid nft transaction. A rejected file would leave
    the node on stale rules."""
    octet = st.integers(1, 4)
    port = st.sampled_from([53, 80, 443, 24001])
    services, endpoints = [], []
    for i in range(data.draw(st.integers(0, 6))):
        ports = [
            (f"p{j}", data.draw(port), data.draw(st.sampled_from(["TCP", "UDP"])), 30000 + j)
            for j in range(data.draw(st.integers(1, 3)))
        ]
        services.append(service_object(
            f"s{i}", f"127.10.0.{data.draw(octet)}", ports,
            type=data.draw(st.sampled_from(["ClusterIP", "NodePort"])),
            affinity_timeout=data.draw(st.sampled_from([None, 1, 10800]))))
        for name, _, protocol, _ in ports:
            backends = data.draw(st.lists(st.tuples(st.just("127.0.1.1"), st.integers(24000, 24010)),
                                          max_size=4))
            endpoints.append(endpoints_object(f"s{i}", backends, port_name=name, protocol=protocol))
    # One Endpoints object per service: merge the per-port subsets drawn above.
    merged: dict[str, dict] = {}
    for ep in endpoints:
        merged.setdefault(ep["metadata"]["name"], {**ep, "subsets": []})["subsets"] += ep["subsets"]
    entries = desired_entries(services, merged.values())
    text = render_ruleset(entries, ["127.0.1.1", "127.0.1.2"], table=table)
    done = subprocess.run(["nft", "--check", "-f", "-"], input=text, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr + text


def test_render_an_address_claimed_by_an_empty_service_stays_rejected() -> None:
    a = service_object("a", VIP, [("", 80, "TCP")])  # sorts first, has no endpoints
    b = service_object("b", VIP, [("", 80, "TCP")])
    text = render_ruleset(desired_entries([a, b], [endpoints_object("b", [("127.0.1.2", 24002)])]),
                          table="t")
    assert f"elements = {{ {VIP} . tcp . 80 }}" in text
    assert "127.0.1.2:24002" not in text
