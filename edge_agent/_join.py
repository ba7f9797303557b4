"""Joining a cluster with a node join token, and the node's own credentials afterwards.

``edgectl node join --token K10<CA hash>::<id>.<secret>`` (or ``python -m edge_agent --token``):

1. fetch the cluster CA from a master (no credential sent), check its sha256 against the token;
2. only then send the token (TLS verified by that CA) to ``POST /edgeplane/v1/nodes/join``;
3. store what comes back in the data directory, mode 0600: ``node-credentials.json`` (the
   node's own API token, which authenticates as ``system:node:<name>``, its log endpoint's
   credential and the masters' addresses) and ``ca.crt``.

From then on -- restarts included -- the agent uses the stored credential; the join token is
never sent again. A revoked credential (``edgectl node revoke NAME``) gets 401; join again with
a new token after deleting ``node-credentials.json``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from controlplane._security import (
    JOIN_TOKEN_PREFIX,
    JoinError,
    fetch_pinned_ca,
    parse_join_token,
    post_join,
)

__all__ = ["CREDENTIALS_FILE", "JoinError", "NodeCredentials", "is_join_token", "join_or_load"]

log = logging.getLogger("edge_agent.join")

CREDENTIALS_FILE = "node-credentials.json"
CA_FILE = "ca.crt"


@dataclass(frozen=True)
class NodeCredentials:
    node_name: str
    token: str
    log_credential: str
    ca_file: str
    servers: list[str]


def is_join_token(text: str | None) -> bool:
    return bool(text) and str(text).strip().startswith(JOIN_TOKEN_PREFIX)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def load_credentials(data_dir: str, node_name: str) -> NodeCredentials | None:
    path = Path(data_dir) / CREDENTIALS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise JoinError(f"{path} is unreadable ({exc}); delete it and join again") from None
    if data.get("nodeName") != node_name:
        raise JoinError(f"{path} holds the credentials of node {data.get('nodeName')!r}, not "
                        f"{node_name!r}; use that node's name or another --data-dir")
    return NodeCredentials(node_name, str(data["token"]), str(data["logCredential"]),
                           str(Path(data_dir) / CA_FILE), [str(s) for s in data.get("servers", [])])


def join_or_load(data_dir: str, node_name: str, servers: list[str],
                 join_token: str | None) -> NodeCredentials | None:
    """The node's stored credentials, or new ones from joining with ``join_token``; None when
    there are neither (the caller then runs with whatever bearer token it was given)."""
    stored = load_credentials(data_dir, node_name)
    if stored is not None:
        log.info("using the node credentials stored in %s", Path(data_dir) / CREDENTIALS_FILE)
        return stored
    if not is_join_token(join_token):
        return None
    assert join_token is not None
    try:
        token = parse_join_token(join_token)
    except ValueError as exc:
        raise JoinError(str(exc)) from None
    if not servers:
        raise JoinError("joining needs --server URL of a master")
    errors = []
    for server in servers:
        try:
            ca_pem = fetch_pinned_ca(server, token)
        except JoinError as exc:
            if "refusing to join" in str(exc):
                raise  # a wrong CA is an attack or a wrong token: never try the secret elsewhere
            errors.append(str(exc))
            continue
        try:
            answer = post_join(server, "/edgeplane/v1/nodes/join", token, ca_pem,
                               {"nodeName": node_name})
        except JoinError as exc:
            if "refused" in str(exc):
                raise
            errors.append(str(exc))
            continue
        for field in ("token", "logCredential"):
            if not isinstance(answer.get(field), str):
                raise JoinError(f"{server} sent an incomplete join answer (no {field})")
        root = Path(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        _write_private(root / CA_FILE, (answer.get("caCert") or ca_pem.decode()).encode())
        record = {"nodeName": node_name, "token": answer["token"],
                  "logCredential": answer["logCredential"],
                  "servers": [str(s) for s in answer.get("servers") or servers]}
        _write_private(root / CREDENTIALS_FILE, json.dumps(record, indent=2).encode())
        log.info("joined the cluster through %s; node credentials stored in %s", server,
                 root / CREDENTIALS_FILE)
        return load_credentials(data_dir, node_name)
    raise JoinError("no master could be joined: " + "; ".join(errors))
