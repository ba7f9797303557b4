"""Standalone proxier: ``python -m netproxy --kubeconfig FILE [--mode auto|nftables|userspace]``.

Watches Services and Endpoints on the cluster the kubeconfig names (or ``--server`` URLs with
``--token``) and programs this node until interrupted; Ctrl-C / SIGTERM remove the rules.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio

from ._nftables import DEFAULT_TABLE, valid_table_name
from ._proxier import MODES, ProxyError, choose_mode, serve_proxy
from ._state import ProxyState
from ._watch import watch_cluster


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m netproxy", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.add_argument("--server", action="append", default=[],
                        help="API server URL instead of a kubeconfig (repeat for every master)")
    parser.add_argument("--token", help="bearer token, with --server")
    parser.add_argument("--mode", choices=MODES, default="auto",
                        help="data-plane mode (auto: nftables if root and nft works)")
    parser.add_argument("--node-address", action="append", default=[], dest="node_addresses",
                        help="an address of this node that NodePorts answer on (repeatable)")
    parser.add_argument("--table", default=DEFAULT_TABLE,
                        help="nftables table name (one per proxier sharing a machine)")
    parser.add_argument("--localnet-interface", action="append", dest="localnet_interfaces",
                        help="interface whose traffic may be DNATed to 127/8 endpoints "
                             "(default: docker0)")
    parser.add_argument("--cache", help="file keeping the last Services/Endpoints seen, so a "
                        "restart while every master is unreachable still serves them")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


async def _run(args: argparse.Namespace, mode: str) -> None:
    from controlplane.client import ApiClient

    if args.server:
        client = ApiClient.for_servers(args.server, token=args.token)
    else:
        client = ApiClient.from_kubeconfig(args.kubeconfig, context=args.context)
    async with client, trio.open_nursery() as nursery:
        state = ProxyState()
        logging.getLogger("netproxy").info("listing services and endpoints from %s",
                                           ", ".join(client.servers))
        await nursery.start(partial(watch_cluster, client, state, cache_path=args.cache))
        await nursery.start(lambda task_status: serve_proxy(
            state, mode=mode, node_addresses=args.node_addresses, table=args.table,
            localnet_interfaces=args.localnet_interfaces or ("docker0",), task_status=task_status))
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()  # serve_proxy removes its rules on the way out
                return


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for address in args.node_addresses:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            print(f"error: --node-address {address!r} is not an IPv4 address", file=sys.stderr)
            return 2
    if not valid_table_name(args.table):
        print(f"error: --table {args.table!r} is not a valid nftables table name", file=sys.stderr)
        return 2
    if args.token and not args.server:
        print("error: --token needs --server (a kubeconfig carries its own credentials)",
              file=sys.stderr)
        return 2
    try:
        mode = choose_mode(args.mode)
    except ProxyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from controlplane.kubeconfig import KubeconfigError

    try:
        trio.run(_run, args, mode)
    except KubeconfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
