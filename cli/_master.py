"""``edgectl master init|start|join|remove``: run one master, or change the set of masters."""

from __future__ import annotations

import pathlib
import ssl
from typing import Any

import click
import httpx

from controlplane._master_tls import ensure_serving_cert, load_ca, new_ca, write_ca
from controlplane._security import (
    JOIN_TOKEN_PREFIX,
    JoinError,
    fetch_pinned_ca,
    parse_join_token,
    post_join,
)
from controlplane.kubeconfig import write_kubeconfig
from controlplane.master import (
    MasterConfig,
    MasterError,
    MasterLayout,
    MasterSpec,
    new_secret,
    new_token,
    parse_host_port,
    read_private,
    run_master,
    write_private,
)

from ._common import CommandError, _leaf_errors, client_options, explain, make_client, run_async

# A join asks one master for the cluster's members; it answers at once or not at all.
_JOIN_INFO_TIMEOUT_S = 10.0


@click.group("master", help="Run a master, or add and remove masters of a running cluster.")
def master_group() -> None:
    pass


def _addr_options(fn: Any) -> Any:
    fn = click.option("--api-addr", metavar="HOST:PORT",
                      help="Where this master serves the Kubernetes API.")(fn)
    fn = click.option("--raft-addr", metavar="HOST:PORT",
                      help="Where this master's store replica talks Raft to the others.")(fn)
    fn = click.option("--data-dir", required=True, type=click.Path(file_okay=False),
                      help="Directory for the journal, snapshots, secrets and kubeconfig.")(fn)
    fn = click.option("--name", default=None, help="This master's name (m1, m2, ...).")(fn)
    return fn


def _run(config: MasterConfig) -> None:
    try:
        run_master(config)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        for leaf in _leaf_errors(exc):
            message = explain(leaf)
            if message is not None:
                raise CommandError(message) from None
        raise


def _lifecycle_options(fn: Any) -> Any:
    fn = click.option("--service-cidr", default=None, metavar="CIDR",
                      help="Service VIP range, stored by the first master for the whole cluster "
                           "(default 10.96.0.0/12; edgectl up: 127.10.0.0/16).")(fn)
    fn = click.option("--node-toleration-seconds", type=float, default=None,
                      help="Seconds before pods of an unreachable node are evicted (default 4).")(fn)
    fn = click.option("--node-grace-period", type=float, default=None,
                      help="Seconds without a Lease renewal before a node is NotReady (default 8).")(fn)
    fn = click.option("--snapshot-count", type=int, default=None, metavar="N",
                      help="Raft log entries between two snapshots of the store (default 20000; "
                           "etcd's --snapshot-count).")(fn)
    return fn


def _tls_options(fn: Any) -> Any:
    fn = click.option("--insecure-http", "--no-tls", "no_tls", is_flag=True,
                      help="Serve plain HTTP instead of HTTPS (tokens in clear text; kubectl "
                           "will not send them): loopback --api-addr only, testing only. "
                           "--no-tls is an old name for it.")(fn)
    fn = click.option("--ca-key-file", type=click.Path(dir_okay=False), default=None,
                      help="The cluster CA key (default: DATA_DIR/ca.key).")(fn)
    fn = click.option("--ca-cert-file", type=click.Path(dir_okay=False), default=None,
                      help="The cluster CA certificate (default: DATA_DIR/ca.crt).")(fn)
    return fn


def _setup_tls(layout: MasterLayout, spec: MasterSpec, ca_cert_file: str | None,
               ca_key_file: str | None, *, create: bool = False) -> tuple[str | None, str | None, bytes | None]:
    """(serving cert file, key file, CA PEM) for this master; nothing when TLS is off."""
    if not spec.tls:
        return None, None, None
    try:
        if ca_cert_file or ca_key_file:
            if not (ca_cert_file and ca_key_file):
                raise MasterError("--ca-cert-file and --ca-key-file go together")
            ca = load_ca(ca_cert_file, ca_key_file)
            write_ca(ca, layout.ca_cert, layout.ca_key)
        elif layout.ca_cert.exists():
            ca = load_ca(layout.ca_cert, layout.ca_key)
        elif create:
            ca = new_ca()
            write_ca(ca, layout.ca_cert, layout.ca_key)
        else:
            raise MasterError(f"no cluster CA: pass --ca-cert-file and --ca-key-file (or "
                              f"--insecure-http on loopback); "
                              f"{layout.ca_cert} does not exist")
        host, _ = parse_host_port(spec.api_addr, "--api-addr")
        ensure_serving_cert(ca, host, layout.tls_cert, layout.tls_key)
    except MasterError as exc:
        raise CommandError(f"error: {exc}") from None
    return str(layout.tls_cert), str(layout.tls_key), ca.cert_pem


def _spec(layout: MasterLayout, name: str | None, raft_addr: str | None, api_addr: str | None,
          peers: tuple[str, ...], dev_memory_store: bool, no_tls: bool = False,
          node_grace_period: float | None = None,
          node_toleration_seconds: float | None = None,
          service_cidr: str | None = None, snapshot_count: int | None = None) -> MasterSpec:
    """Flags, falling back to D/master.json (so a restart needs only --data-dir)."""
    saved = layout.read_spec()
    spec = MasterSpec(
        name=name or (saved.name if saved else ""),
        raft_addr=raft_addr or (saved.raft_addr if saved else ""),
        api_addr=api_addr or (saved.api_addr if saved else ""),
        peers=list(peers) if peers else (list(saved.peers) if saved else []),
        dev_memory_store=dev_memory_store or (saved.dev_memory_store if saved else False),
        tls=not no_tls and (saved.tls if saved else True),
        node_grace_period=node_grace_period if node_grace_period is not None else (
            saved.node_grace_period if saved else None),
        node_toleration_seconds=node_toleration_seconds if node_toleration_seconds is not None
        else (saved.node_toleration_seconds if saved else None),
        service_cidr=service_cidr or (saved.service_cidr if saved else None),
        snapshot_count=snapshot_count if snapshot_count is not None else (
            saved.snapshot_count if saved else None),
    )
    missing = [flag for flag, value in (("--name", spec.name), ("--raft-addr", spec.raft_addr),
                                        ("--api-addr", spec.api_addr)) if not value]
    if missing:
        raise CommandError(f"error: {', '.join(missing)} required ({layout.spec} does not exist "
                           "or does not say)")
    try:
        spec.validate()
    except MasterError as exc:
        raise CommandError(f"error: {exc}") from None
    return spec


@master_group.command("init")
@_addr_options
@click.option("--dev-memory-store", is_flag=True,
              help="Keep the store in memory (one master, nothing persisted): development only.")
@_tls_options
@_lifecycle_options
def init_command(name: str | None, data_dir: str, raft_addr: str | None, api_addr: str | None,
                 dev_memory_store: bool, ca_cert_file: str | None, ca_key_file: str | None,
                 no_tls: bool, node_grace_period: float | None,
                 node_toleration_seconds: float | None, service_cidr: str | None,
                 snapshot_count: int | None) -> None:
    """Start the first master of a new cluster.

    Creates the cluster secret and the admin token, writes DATA_DIR/kubeconfig, and runs the
    master in the foreground until interrupted.

    \b
    Example:
      edgectl master init --name m1 --data-dir /var/lib/edgeplane \\
          --raft-addr 10.0.0.1:7001 --api-addr 10.0.0.1:6443
      export KUBECONFIG=/var/lib/edgeplane/kubeconfig; kubectl get namespaces
    """
    layout = MasterLayout(data_dir)
    if layout.spec.exists() or layout.has_state():
        raise CommandError(f"error: {data_dir} already holds a master; restart it with "
                           f"`edgectl master start --data-dir {data_dir}`")
    spec = _spec(layout, name or "m1", raft_addr, api_addr, (), dev_memory_store, no_tls,
                 node_grace_period, node_toleration_seconds, service_cidr, snapshot_count)
    layout.create()
    secret, token = new_secret(), new_token()
    write_private(layout.secret, secret)
    write_private(layout.admin_token, token)
    certfile, keyfile, ca_pem = _setup_tls(layout, spec, ca_cert_file, ca_key_file, create=True)
    layout.write_spec(spec)
    config = MasterConfig(spec=spec, data_dir=str(layout.root), secret=secret, admin_token=token,
                          ssl_certfile=certfile, ssl_keyfile=keyfile)
    write_kubeconfig(layout.kubeconfig, [config.api_url], token=token, names=[spec.name],
                     ca_data=ca_pem)
    click.echo(f"cluster initialised; admin kubeconfig: {layout.kubeconfig}", err=True)
    if spec.tls:
        click.echo(f"add masters:  TOKEN=$(KUBECONFIG={layout.kubeconfig} edgectl token create "
                   f"--role master); edgectl master join --server {config.api_url} "
                   "--token \"$TOKEN\" --name m2 ...", err=True)
        click.echo(f"add nodes:    TOKEN=$(KUBECONFIG={layout.kubeconfig} edgectl token create); "
                   f"edgectl node join --server {config.api_url} --token \"$TOKEN\" --name n1 ...",
                   err=True)
    else:
        click.echo(f"add masters with: edgectl master join --server {config.api_url} "
                   f"--token \"$(cat {layout.admin_token})\" --name m2 ...", err=True)
    _run(config)


@master_group.command("start")
@_addr_options
@click.option("--peer", "peers", multiple=True, metavar="HOST:PORT",
              help="Raft address of another member (repeat for each).")
@click.option("--secret-file", type=click.Path(dir_okay=False), default=None,
              help="The cluster secret (default: DATA_DIR/secret).")
@click.option("--admin-token-file", type=click.Path(dir_okay=False), default=None,
              help="The admin token (default: DATA_DIR/admin-token).")
@click.option("--dev-memory-store", is_flag=True, help="In-memory store (development only).")
@_tls_options
@_lifecycle_options
def start_command(name: str | None, data_dir: str, raft_addr: str | None, api_addr: str | None,
                  peers: tuple[str, ...], secret_file: str | None, admin_token_file: str | None,
                  dev_memory_store: bool, ca_cert_file: str | None, ca_key_file: str | None,
                  no_tls: bool, node_grace_period: float | None,
                  node_toleration_seconds: float | None, service_cidr: str | None,
                  snapshot_count: int | None) -> None:
    """Start a master of a static group, or restart any master from its data directory.

    Every member of a static group is started with the others' Raft addresses as --peer and
    the same secret and admin token files. A master started before needs only --data-dir.

    \b
    Examples:
      edgectl master start --name m2 --data-dir /var/lib/edgeplane \\
          --raft-addr 10.0.0.2:7001 --api-addr 10.0.0.2:6443 \\
          --peer 10.0.0.1:7001 --peer 10.0.0.3:7001 \\
          --secret-file secret --admin-token-file admin-token
      edgectl master start --data-dir /var/lib/edgeplane      # restart
    """
    layout = MasterLayout(data_dir)
    spec = _spec(layout, name, raft_addr, api_addr, peers, dev_memory_store, no_tls,
                 node_grace_period, node_toleration_seconds, service_cidr, snapshot_count)
    try:
        secret = read_private(secret_file or layout.secret, "--secret-file")
        token = read_private(admin_token_file or layout.admin_token, "--admin-token-file")
    except MasterError as exc:
        raise CommandError(f"error: {exc}") from None
    layout.create()
    write_private(layout.secret, secret)
    write_private(layout.admin_token, token)
    certfile, keyfile, ca_pem = _setup_tls(layout, spec, ca_cert_file, ca_key_file)
    layout.write_spec(spec)
    config = MasterConfig(spec=spec, data_dir=str(layout.root), secret=secret, admin_token=token,
                          ssl_certfile=certfile, ssl_keyfile=keyfile)
    if not layout.kubeconfig.exists():
        write_kubeconfig(layout.kubeconfig, [config.api_url], token=token, names=[spec.name],
                         ca_data=ca_pem)
    _run(config)


def _join_info(server: str, token: str, ca_cert_file: str | None) -> dict[str, Any]:
    url = server.rstrip("/") + "/edgeplane/v1/join"
    verify: Any = False
    if ca_cert_file:
        verify = ssl.create_default_context(cafile=ca_cert_file)
    elif server.startswith("https:"):
        click.echo(f"warning: not verifying {server}'s certificate (pass --ca-cert-file to)",
                   err=True)
    try:
        response = httpx.post(url, headers={"Authorization": f"Bearer {token}"},
                              timeout=_JOIN_INFO_TIMEOUT_S, verify=verify)
    except httpx.HTTPError as exc:
        raise CommandError(f"error: cannot reach {server}: {exc}") from None
    if response.status_code == 401:
        raise CommandError(f"error: {server} refused the token (401 Unauthorized)")
    if response.status_code != 200:
        raise CommandError(f"error: {server} answered {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError:
        raise CommandError(f"error: {server} did not answer with JSON; is it an edgeplane master?") from None


@master_group.command("join")
@_addr_options
@click.option("--server", required=True, metavar="URL", help="API URL of any running master.")
@click.option("--token", default=None,
              help="A master join token (K10..., from `edgectl token create --role master`) "
                   "or the cluster's admin token.")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the token (instead of --token).")
@click.option("--ca-cert-file", type=click.Path(dir_okay=False), default=None,
              help="Verify --server against this CA certificate (not needed with a join "
                   "token: it pins the CA).")
def join_command(name: str | None, data_dir: str, raft_addr: str | None, api_addr: str | None,
                 server: str, token: str | None, token_file: str | None,
                 ca_cert_file: str | None) -> None:
    """Add a master to a running cluster (a Raft membership change), then run it.

    With a join token (K10<CA hash>::<id>.<secret>) the CA is fetched first and its hash
    checked against the token before the token's secret is sent; a mismatching CA is refused.
    The cluster secret is then fetched through the authenticated API; the new master starts its
    replica with every member as a peer and asks the leader to add it.

    \b
    Example:
      TOKEN=$(edgectl token create --role master --ttl 1h)     # on a machine with the admin kubeconfig
      edgectl master join --server https://10.0.0.1:6443 --token "$TOKEN" --name m4 \\
          --data-dir /var/lib/edgeplane --raft-addr 10.0.0.4:7001 --api-addr 10.0.0.4:6443
    """
    if token_file:
        token = read_private(token_file, "--token-file")
    if not token:
        raise CommandError("error: --token or --token-file is required")
    layout = MasterLayout(data_dir)
    if layout.has_state():
        raise CommandError(f"error: {data_dir} already holds a master; restart it with "
                           f"`edgectl master start --data-dir {data_dir}`")
    if token.startswith(JOIN_TOKEN_PREFIX):
        try:
            join_token = parse_join_token(token)
            ca_pem = fetch_pinned_ca(server, join_token)
            info = post_join(server, "/edgeplane/v1/join", join_token, ca_pem)
        except (ValueError, JoinError) as exc:
            raise CommandError(f"error: {exc}") from None
        if not isinstance(info.get("adminToken"), str):
            raise CommandError(f"error: {server} sent an incomplete join answer")
        token = info["adminToken"]
    else:
        info = _join_info(server, token, ca_cert_file)
    members = info.get("members") or []
    if not isinstance(info.get("secret"), str) or not members:
        raise CommandError(f"error: {server} sent an incomplete join answer")
    if any(m.get("name") == name for m in members):
        raise CommandError(f"error: the cluster already has a master named {name}")
    peers = tuple(m["raftAddress"] for m in members if m.get("raftAddress") != raft_addr)
    spec = _spec(layout, name, raft_addr, api_addr, peers, False, not info.get("caCert"))
    layout.create()
    write_private(layout.secret, info["secret"])
    write_private(layout.admin_token, token)
    if info.get("caCert") and info.get("caKey"):
        layout.ca_cert.write_text(info["caCert"])
        write_private(layout.ca_key, info["caKey"].rstrip("\n"))
    certfile, keyfile, ca_pem = _setup_tls(layout, spec, None, None)
    layout.write_spec(spec)
    api_servers = [m["apiAddress"] for m in members if m.get("apiAddress")]
    config = MasterConfig(spec=spec, data_dir=str(layout.root), secret=info["secret"],
                          admin_token=token, join_servers=api_servers or [server],
                          ssl_certfile=certfile, ssl_keyfile=keyfile)
    names = [m["name"] for m in members if m.get("apiAddress")] + [spec.name]
    write_kubeconfig(layout.kubeconfig, [*api_servers, config.api_url], token=token, names=names,
                     ca_data=ca_pem)
    click.echo(f"joining {len(members)} master(s) as {spec.name}; afterwards, "
               "`edgectl cluster kubeconfig -o FILE` writes a kubeconfig with every master", err=True)
    _run(config)


@master_group.command("remove")
@click.argument("name")
@client_options
@run_async
async def remove_command(name: str, kubeconfig: str | None, context_name: str | None) -> None:
    """Remove master NAME from the cluster (a Raft membership change on the leader).

    NAME may be the current leader: it first hands its leadership to a master that holds its
    whole log (writes pause for about an election meanwhile), and the new leader removes it.
    That fails, and nothing changes, when NAME is the last master or no other master is
    connected and caught up. Stop the removed master's process afterwards.

    \b
    Example:
      edgectl master remove m4
    """
    async with make_client(kubeconfig, context_name) as client:
        body = await client.request_json("DELETE", f"/edgeplane/v1/members/{name}")
    left = ", ".join(m["name"] for m in body.get("members", []))
    click.echo(f"master {name} removed; members: {left}")



@master_group.command("secrets")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="Where to write secret, admin-token, ca.crt and ca.key.")
def secrets_command(directory: str) -> None:
    """Create the shared files of a static group (copy them to every master's host).

    \b
    Example:
      edgectl master secrets --dir ./site
      edgectl master start --name m1 ... --secret-file site/secret \\
          --admin-token-file site/admin-token --ca-cert-file site/ca.crt --ca-key-file site/ca.key
    """
    root = pathlib.Path(directory)
    targets = [root / n for n in ("secret", "admin-token", "ca.crt", "ca.key")]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise CommandError(f"error: refusing to overwrite {', '.join(existing)}")
    root.mkdir(parents=True, exist_ok=True)
    write_private(root / "secret", new_secret())
    write_private(root / "admin-token", new_token())
    write_ca(new_ca(), root / "ca.crt", root / "ca.key")
    click.echo(f"wrote {', '.join(str(t) for t in targets)}")
