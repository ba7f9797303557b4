"""Reading and writing kubeconfig files, with every master of a cluster listed.

A Kubernetes kubeconfig names one ``server`` per cluster entry, so kubectl talks to one master.
edgeplane writes one cluster entry per master (``edgeplane-m1``, ``edgeplane-m2``, ...), a
context for the first, and on every entry an extension named ``edgeplane`` that lists all the
masters' URLs: kubectl keeps using its current context, while edgeplane's own clients read the
extension and fail over between masters.

The file format is Kubernetes' (``apiVersion: v1``, ``kind: Config``); unknown fields are kept
as they are by kubectl, and the ``extensions`` list is part of the schema (minikube uses it too).
"""

from __future__ import annotations

import base64
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "EXTENSION_NAME",
    "ClientConfig",
    "KubeconfigError",
    "default_kubeconfig_path",
    "load_kubeconfig",
    "render_kubeconfig",
    "write_kubeconfig",
]

# Name of the cluster extension that lists every master (one name, so it is easy to grep for).
EXTENSION_NAME = "edgeplane"


class KubeconfigError(Exception):
    """The kubeconfig is missing, unreadable or does not say how to reach a cluster."""


@dataclass(frozen=True)
class ClientConfig:
    """What a client needs to reach a cluster: every master, and the credentials.

    ``servers`` is ordered: the current context's server first, then the others.
    """

    servers: tuple[str, ...]
    token: str | None = None
    ca_data: bytes | None = None  # PEM bundle the servers' certificates must chain to
    insecure_skip_tls_verify: bool = False
    client_cert_data: bytes | None = None  # PEM, for node credentials (security issue)
    client_key_data: bytes | None = None
    namespace: str = "default"
    context: str | None = None
    source: str | None = field(default=None, compare=False)  # the file it came from


def default_kubeconfig_path() -> pathlib.Path:
    """Where kubectl would look: the first entry of ``$KUBECONFIG``, else ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    for entry in env.split(os.pathsep):
        if entry:
            return pathlib.Path(entry)
    return pathlib.Path.home() / ".kube" / "config"


def _named(entries: Any, name: str, what: str, source: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(what)
            return body if isinstance(body, dict) else {}
    raise KubeconfigError(f"{source}: no {what} named {name!r}")


def _pem_field(body: dict[str, Any], key: str, source: str) -> bytes | None:
    """Read ``<key>-data`` (base64) or ``<key>`` (a file path), as kubectl does."""
    data = body.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except (ValueError, TypeError) as exc:
            raise KubeconfigError(f"{source}: {key}-data is not valid base64") from exc
    path = body.get(key)
    if path:
        file = pathlib.Path(path)
        if not file.is_absolute():
            file = pathlib.Path(source).parent / file
        try:
            return file.read_bytes()
        except OSError as exc:
            raise KubeconfigError(f"{source}: cannot read {key} {file}: {exc.strerror}") from exc
    return None


def _extension_servers(cluster: dict[str, Any]) -> list[str]:
    for ext in cluster.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == EXTENSION_NAME:
            body = ext.get("extension")
            if isinstance(body, dict) and isinstance(body.get("servers"), list):
                return [s for s in body["servers"] if isinstance(s, str) and s]
    return []


def load_kubeconfig(
    path: str | os.PathLike[str] | None = None, *, context: str | None = None
) -> ClientConfig:
    """Load the client configuration from a kubeconfig file (kubectl's default path if None).

    Raises :class:`KubeconfigError` with the file name and what is wrong.
    """
    file = pathlib.Path(path) if path is not None else default_kubeconfig_path()
    source = str(file)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise KubeconfigError(
            f"no kubeconfig at {source} (pass --kubeconfig, or set KUBECONFIG)"
        ) from None
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {source}: {exc.strerror}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{source} is not a kubeconfig (expected a mapping)")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeconfigError(f"{source}: no current-context (pass --context)")
    ctx = _named(doc.get("contexts"), ctx_name, "context", source)
    cluster_name = ctx.get("cluster")
    if not cluster_name:
        raise KubeconfigError(f"{source}: context {ctx_name!r} names no cluster")
    cluster = _named(doc.get("clusters"), cluster_name, "cluster", source)
    user: dict[str, Any] = {}
    if ctx.get("user"):
        user = _named(doc.get("users"), ctx["user"], "user", source)

    servers: list[str] = []
    if cluster.get("server"):
        servers.append(str(cluster["server"]).rstrip("/"))
    for extra in _extension_servers(cluster):
        extra = extra.rstrip("/")
        if extra not in servers:
            servers.append(extra)
    if not servers:
        raise KubeconfigError(f"{source}: cluster {cluster_name!r} has no server")

    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = pathlib.Path(user["tokenFile"]).read_text().strip()
        except OSError as exc:
            raise KubeconfigError(f"{source}: cannot read tokenFile: {exc.strerror}") from exc
    return ClientConfig(
        servers=tuple(servers),
        token=token or None,
        ca_data=_pem_field(cluster, "certificate-authority", source),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        client_cert_data=_pem_field(user, "client-certificate", source),
        client_key_data=_pem_field(user, "client-key", source),
        namespace=str(ctx.get("namespace") or "default"),
        context=ctx_name,
        source=source,
    )


def render_kubeconfig(
    servers: list[str] | tuple[str, ...],
    *,
    token: str | None = None,
    ca_data: bytes | None = None,
    client_cert_data: bytes | None = None,
    client_key_data: bytes | None = None,
    names: list[str] | None = None,
    cluster_prefix: str = "edgeplane",
    user: str = "admin",
    namespace: str = "default",
) -> dict[str, Any]:
    """The kubeconfig document for a cluster whose masters answer at ``servers``.

    ``names`` are the masters' names (``m1``...), used in the cluster entry names; the context
    ``<cluster_prefix>`` points at the first master, and ``<cluster_prefix>-<name>`` at each.
    """
    if not servers:
        raise ValueError("a kubeconfig needs at least one server")
    names = list(names) if names else [f"m{i + 1}" for i in range(len(servers))]
    if len(names) != len(servers):
        raise ValueError("names and servers differ in length")
    extension = {"name": EXTENSION_NAME, "extension": {"servers": list(servers)}}
    clusters = []
    for name, server in zip(names, servers, strict=True):
        body: dict[str, Any] = {"server": server, "extensions": [extension]}
        if ca_data is not None:
            body["certificate-authority-data"] = base64.b64encode(ca_data).decode()
        clusters.append({"name": f"{cluster_prefix}-{name}", "cluster": body})
    user_name = f"{cluster_prefix}-{user}"
    user_body: dict[str, Any] = {}
    if token:
        user_body["token"] = token
    if client_cert_data is not None:
        user_body["client-certificate-data"] = base64.b64encode(client_cert_data).decode()
    if client_key_data is not None:
        user_body["client-key-data"] = base64.b64encode(client_key_data).decode()
    contexts = [
        {
            "name": cluster_prefix,
            "context": {"cluster": clusters[0]["name"], "user": user_name, "namespace": namespace},
        }
    ]
    for name, entry in zip(names, clusters, strict=True):
        contexts.append(
            {
                "name": f"{cluster_prefix}-{name}",
                "context": {"cluster": entry["name"], "user": user_name, "namespace": namespace},
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "users": [{"name": user_name, "user": user_body}],
        "contexts": contexts,
        "current-context": cluster_prefix,
    }


def write_kubeconfig(path: str | os.PathLike[str], servers: list[str] | tuple[str, ...], **kwargs: Any) -> pathlib.Path:
    """Write :func:`render_kubeconfig` to ``path``, readable only by its owner (it holds a token)."""
    file = pathlib.Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(render_kubeconfig(servers, **kwargs), sort_keys=False)
    tmp = file.with_name(file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, file)
    return file
