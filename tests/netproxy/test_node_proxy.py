"""The agent's netproxy (edge_agent._proxy): a restart while every master is unreachable serves
the last Services and Endpoints from the agent's cache file at once (issue 6: the data plane
keeps working with its last rules while masters are unreachable)."""

from __future__ import annotations

import json
import socket
from functools import partial

import trio

from edge_agent._proxy import PROXY_CACHE_FILE, proxy_table, serve_node_proxy
from netproxy.testing import endpoints_object, http_get, service_object

VIP = "127.10.2.7"
VIP_PORT = 26401
BACKEND = ("127.0.1.1", 26402)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_table_names_are_per_node_and_valid() -> None:
    from netproxy._nftables import valid_table_name

    assert proxy_table("n1") == "edgeplane-n1"
    assert proxy_table("edge.site-a.n1") == "edgeplane-edge-site-a-n1"
    assert proxy_table("n1") != proxy_table("n2")
    assert valid_table_name(proxy_table("x" * 300))


async def test_restart_during_an_outage_serves_from_the_cache(tmp_path, http_backend) -> None:
    backend = http_backend(*BACKEND)
    cache = {"services": [service_object("web", VIP, [("http", VIP_PORT, "TCP")])],
             "endpoints": [endpoints_object("web", [BACKEND], port_name="http")]}
    (tmp_path / PROXY_CACHE_FILE).write_text(json.dumps(cache))
    nobody = f"http://127.0.0.1:{unused_port()}"  # every master unreachable: connection refused
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(partial(
                serve_node_proxy, mode="userspace", node_name="n1", node_address="127.0.1.1",
                servers=[nobody], token=None, verify=False, data_dir=str(tmp_path)))
            assert handle.mode == "userspace"
            assert await http_get(VIP, VIP_PORT) == backend.identity
            assert backend.hits == 1
            nursery.cancel_scope.cancel()
    # cancelled: the listener is gone with the proxy
    try:
        await http_get(VIP, VIP_PORT, timeout=0.5)
    except (OSError, trio.TooSlowError):
        pass
    else:
        raise AssertionError("the VIP still answers after the proxy stopped")
