"""`python -m edge_agent`: run one edge agent in the foreground (what `edgectl node join` runs).

Example: python -m edge_agent --name n1 --address 127.0.1.1 --data-dir /tmp/n1 \
             --server https://127.0.0.1:6443 --token T --ca-file ca.crt
Without --server the agent runs from its cache only (pods recovered, nothing new).
"""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from ._agent import AgentConfig, run_agent
from ._join import JoinError, join_or_load


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"labels must be k=v[,k=v...], got {item!r}")
        out[key] = value
    return out


def _servers(text: str) -> list[str]:
    urls = [s.strip() for s in text.split(",") if s.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise argparse.ArgumentTypeError(f"server URL must start with http(s)://: {url!r}")
    return urls


def parse_args(argv: list[str] | None) -> AgentConfig:
    p = argparse.ArgumentParser(prog="python -m edge_agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="node name")
    p.add_argument("--address", default="127.0.0.1", help="node address (InternalIP)")
    p.add_argument("--data-dir", required=True, help="directory for the pod cache")
    p.add_argument("--server", type=_servers, action="append", default=[],
                   help="API server URL(s), comma-separated or repeated")
    p.add_argument("--token", help="a node join token (K10..., used once: the node's own "
                                   "credential is stored in --data-dir) or a bearer token")
    p.add_argument("--ca-file", help="CA bundle to verify the API servers")
    p.add_argument("--insecure-skip-tls-verify", action="store_true")
    p.add_argument("--labels", type=_labels, default={}, help="node labels k=v,...")
    p.add_argument("--runtime", choices=["docker", "hollow"], default="docker")
    p.add_argument("--log-port", type=int, default=10250, help="log endpoint port (0: any)")
    p.add_argument("--no-log-endpoint", action="store_true")
    p.add_argument("--log-credential", help="bearer credential the log endpoint requires "
                                            "(default: the API token)")
    p.add_argument("--pull-registries",
                   help="comma-separated registries this node may pull from (default: any)")
    p.add_argument("--backoff-base", type=float, default=10.0)
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # httpx logs every request at INFO: a lease renewal every few seconds is not news.
    logging.getLogger("httpx").setLevel(logging.DEBUG if a.verbose else logging.WARNING)
    servers = [u for group in a.server for u in group]
    token, ca_file, log_credential = a.token, a.ca_file, a.log_credential
    credentials = join_or_load(a.data_dir, a.name, servers, a.token)
    if credentials is not None:
        servers = servers or credentials.servers
        token, ca_file = credentials.token, credentials.ca_file
        log_credential = log_credential or credentials.log_credential
    return AgentConfig(
        node_name=a.name, data_dir=a.data_dir, address=a.address,
        servers=servers, token=token,
        verify=False if a.insecure_skip_tls_verify else (ca_file or True),
        labels=a.labels, runtime=a.runtime,
        log_port=None if a.no_log_endpoint else a.log_port, log_credential=log_credential,
        pull_registries=([r.strip() for r in a.pull_registries.split(",") if r.strip()]
                         if a.pull_registries is not None else None),
        backoff_base=a.backoff_base,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except JoinError as exc:
        print(f"edge agent: {exc}", file=sys.stderr)
        return 1
    try:
        trio.run(run_agent, config)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear line instead of a traceback (e.g. no Docker engine)
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        print(f"edge agent: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
