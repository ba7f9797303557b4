"""The node's netproxy, run by the agent: Services + Endpoints from the masters -> this node's
data plane (nftables DNAT or the userspace balancer, see :mod:`netproxy`).

The proxy has its own API client (list + watch of every namespace's Services and Endpoints,
failing over between masters) and a cache file in the agent's directory, so an agent restarted
while every master is unreachable programs the last rules it saw at once. While masters are
away the rules simply stay.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("edge_agent.proxy")

# nftables table names allow letters, digits, '-' and '_'; node names may carry '.'.
_TABLE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# nftables limits a table name to 255 bytes; node names can be longer than is sensible there.
_TABLE_MAX = 64
PROXY_CACHE_FILE = "proxy-cache.json"


def proxy_table(node_name: str) -> str:
    """The node's own nftables table: agents sharing a machine never remove each other's."""
    return ("edgeplane-" + _TABLE_UNSAFE.sub("-", node_name))[:_TABLE_MAX]


def _client(servers: list[str], token: str | None, verify: bool | str) -> Any:
    from controlplane.client import ApiClient
    from controlplane.kubeconfig import ClientConfig

    ca_data = Path(verify).read_bytes() if isinstance(verify, str) else None
    return ApiClient(ClientConfig(servers=tuple(s.rstrip("/") for s in servers), token=token,
                                  ca_data=ca_data, insecure_skip_tls_verify=verify is False),
                     user_agent="edgeplane-netproxy")


async def serve_node_proxy(
    *,
    mode: str,
    node_name: str,
    node_address: str,
    servers: list[str],
    token: str | None,
    verify: bool | str,
    data_dir: str,
    table: str | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the node's proxy until cancelled (then its rules are removed).

    Started with the :class:`netproxy.ProxyHandle` once the first rules are programmed: after the
    masters' first list, or at once from the cache when one exists. Raises
    :class:`netproxy.ProxyError` if ``mode`` cannot run here.
    """
    from netproxy import ProxyState, choose_mode, serve_proxy, watch_cluster

    mode = choose_mode(mode)  # a mode that cannot run here fails now, not inside a group
    state = ProxyState()
    async with _client(servers, token, verify) as client, trio.open_nursery() as nursery:
        await nursery.start(partial(watch_cluster, client, state,
                                    cache_path=str(Path(data_dir) / PROXY_CACHE_FILE)))
        handle = await nursery.start(partial(
            serve_proxy, state, mode=mode, node_addresses=[node_address],
            table=table or proxy_table(node_name)))
        log.info("netproxy: %s mode, %d services, NodePorts on %s", handle.mode,
                 len(state.services), node_address)
        task_status.started(handle)
