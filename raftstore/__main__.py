"""``python -m raftstore``: one replica process with a loopback client port.

    python -m raftstore --name n1 --self 127.0.0.1:21001 --peer 127.0.0.1:21002 \\
        --peer 127.0.0.1:21003 --data-dir D --secret-file F --client-port 21101

The standalone harness for multi-process tests, the demo and the benchmark (the master process
embeds RaftStore instead). Prints one line ``ready <client port>`` on stdout once serving.
SIGTERM/SIGINT close the replica cleanly (journal flushed); SIGKILL is the crash the
durability promise covers.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from ._bridge import DEFAULT_MAX_IN_FLIGHT, open_raft_store
from ._client_port import serve_client_port
from ._gcpolicy import install_gc_policy, serve_gc_policy
from ._replica import DEFAULT_COMPACTION_MIN_ENTRIES, ReplicaConfig
from ._types import StoreError


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m raftstore", description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="replica name (for status)")
    p.add_argument("--self", dest="self_address", required=True, help="raft address host:port")
    p.add_argument("--peer", action="append", default=[], help="another member host:port")
    p.add_argument("--data-dir", required=True, help="journal and snapshot directory")
    p.add_argument("--secret-file", required=True, help="file holding the cluster secret")
    p.add_argument("--client-port", type=int, default=0, help="loopback client port (0: any)")
    p.add_argument("--fsync", action="store_true", help="sync the journal before acknowledging")
    p.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    p.add_argument(
        "--compaction-min-entries",
        type=int,
        default=DEFAULT_COMPACTION_MIN_ENTRIES,
        help="log entries before a snapshot is taken",
    )
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


async def _run(args: argparse.Namespace, secret: bytes) -> None:
    config = ReplicaConfig(
        self_address=args.self_address,
        peers=tuple(p for p in args.peer if p != args.self_address),
        data_dir=args.data_dir,
        secret=secret,
        fsync=args.fsync,
        compaction_min_entries=args.compaction_min_entries,
    )
    async with open_raft_store(config, name=args.name, max_in_flight=args.max_in_flight) as store:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_client_port, store, args.client_port, secret)
            await nursery.start(serve_gc_policy, store.is_leader)
            print(f"ready {port}", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        with open(args.secret_file, "rb") as f:
            secret = f.read().strip()
    except OSError as exc:
        print(f"cannot read the secret file: {exc}", file=sys.stderr)
        return 2
    if len(secret) < 16:
        print("the cluster secret must be at least 16 bytes", file=sys.stderr)
        return 2
    # The state machine holds many small long-lived objects: fewer, shorter collections
    # (serve_gc_policy also freezes survivors periodically).
    install_gc_policy()
    failed: list[BaseException] = []
    try:
        trio.run(_run, args, secret)
    except* (StoreError, OSError) as group:
        failed.extend(group.exceptions)
    for error in failed:
        print(f"raftstore: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
