"""``edgectl cluster status`` and ``edgectl node join|list``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click
import trio

from controlplane.client import ApiClient, ClusterUnreachable

from ._common import CommandError, client_options, make_client, run_async
from ._output import print_table


@click.group("cluster", help="The state of the cluster's masters.")
def cluster_group() -> None:
    pass


async def fetch_status(client: ApiClient) -> dict[str, Any]:
    """The cluster status as the leader sees it (lag per member is only known there).

    Asks whichever master answers; if that one is not the leader, asks the leader it names.
    """
    status = await client.request_json("GET", "/edgeplane/v1/cluster/status")
    leader_url = status.get("leaderApiAddress")
    if not status.get("isLeader") and leader_url and leader_url != client.current_server:
        try:
            leader_config = dataclasses.replace(client.config, servers=(leader_url,))
            async with ApiClient(leader_config, retry_timeout=1.0) as leader_client:
                status = await leader_client.request_json("GET", "/edgeplane/v1/cluster/status")
        except ClusterUnreachable:
            status["note"] = f"the leader's API ({leader_url}) did not answer; this is {status['self']}'s view"
    return status


def _render(status: dict[str, Any]) -> None:
    leader = status.get("leader") or "none (no quorum?)"
    click.echo(f"leader: {leader}   term: {status.get('term')}   commit index: "
               f"{status.get('commitIndex')}   applied: {status.get('appliedIndex')}   "
               f"revision: {status.get('revision')}   (view of {status.get('self')})")
    rows = []
    for m in status.get("members", []):
        lag = m.get("lag")
        contact = m.get("lastContactSeconds")
        rows.append([
            m.get("name") or "?", m.get("role", ""), m.get("raftAddress") or "",
            m.get("apiAddress") or "", "" if m.get("matchIndex") is None else str(m["matchIndex"]),
            "" if lag is None else str(lag),
            "" if contact is None else f"{contact:.2f}s",
        ])
    click.echo()
    print_table(["MEMBER", "ROLE", "RAFT", "API", "MATCH", "LAG", "LAST CONTACT"], rows)
    duties = status.get("leaderDuties") or {}
    click.echo()
    click.echo(f"leader duties: {duties.get('holder') or 'not running'}"
               + (f" (renewed {duties['renewTime']})" if duties.get("renewTime") else ""))
    nodes = status.get("nodes") or {}
    not_ready = [n["name"] for n in nodes.get("items") or [] if not n.get("ready")]
    click.echo(f"nodes: {nodes.get('total', 0)} total, {nodes.get('ready', 0)} Ready, "
               f"{nodes.get('notReady', 0)} NotReady"
               + (f" ({', '.join(not_ready[:10])}{', ...' if len(not_ready) > 10 else ''})"
                  if not_ready else ""))
    if status.get("note"):
        click.echo(f"note: {status['note']}")


@cluster_group.command("status")
@client_options
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: the status as one JSON object.")
@run_async
async def status_command(kubeconfig: str | None, context_name: str | None, output: str) -> None:
    """Members, leader, term, commit index, lag per member, leader duties holder, nodes.

    \b
    Examples:
      edgectl cluster status
      edgectl cluster status -o json | jq .leader
    """
    async with make_client(kubeconfig, context_name) as client:
        status = await fetch_status(client)
    if output == "json":
        click.echo(json.dumps(status, indent=2))
    else:
        _render(status)


@cluster_group.command("kubeconfig")
@client_options
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write it (default: print to stdout).")
@run_async
async def kubeconfig_command(kubeconfig: str | None, context_name: str | None,
                             output_path: str | None) -> None:
    """A kubeconfig listing every current master (after joins and removals), leader first.

    kubectl uses the first master; edgectl and the other edgeplane clients fail over to all.

    \b
    Examples:
      edgectl cluster kubeconfig -o ~/.kube/edgeplane
      KUBECONFIG=~/.kube/edgeplane kubectl get nodes
    """
    from controlplane.kubeconfig import render_kubeconfig, write_kubeconfig

    async with make_client(kubeconfig, context_name) as client:
        members = (await client.request_json("GET", "/edgeplane/v1/members"))["members"]
        status = await fetch_status(client)
        config = client.config
    leader = status.get("leader")
    members.sort(key=lambda m: (m["name"] != leader, m["name"]))
    if not members:
        raise CommandError("error: the cluster reports no members")
    servers = [m["apiAddress"] for m in members]
    names = [m["name"] for m in members]
    options = dict(token=config.token, ca_data=config.ca_data, names=names,
                   client_cert_data=config.client_cert_data,
                   client_key_data=config.client_key_data, namespace=config.namespace)
    if output_path:
        write_kubeconfig(output_path, servers, **options)
        click.echo(f"wrote {output_path}: {', '.join(names)}", err=True)
    else:
        import yaml

        click.echo(yaml.safe_dump(render_kubeconfig(servers, **options), sort_keys=False), nl=False)


@click.group("node", help="Edge nodes: run an agent, list nodes.")
def node_group() -> None:
    pass


@node_group.command("join")
@click.option("--name", required=True, help="The node's name.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False),
              help="The agent's directory (pod cache that keeps pods running offline).")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="The node's IP: host ports and the log endpoint bind here.")
@click.option("--server", "servers", multiple=True, metavar="URL",
              help="API URL of a master (repeat for each; default: from --kubeconfig).")
@click.option("--token", default=None,
              help="A node join token (K10..., from `edgectl token create`): used once, to get "
                   "this node's own credential (kept in DATA_DIR); or a bearer token for the API.")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the token.")
@click.option("--ca-cert-file", type=click.Path(dir_okay=False), default=None,
              help="Verify the masters against this CA certificate.")
@click.option("--hollow", is_flag=True, help="Simulate pods instead of running containers.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A node label.")
@click.option("--log-port", type=click.IntRange(0, 65535), default=10250, show_default=True,
              help="Port of the log endpoint the masters proxy `logs` to (0: any free port).")
@click.option("--proxy-mode", type=click.Choice(["auto", "nftables", "userspace", "none"]),
              default="auto", show_default=True,
              help="The node's netproxy for Service VIPs and NodePorts (auto: nftables when "
                   "root and nft work, else userspace; none: no proxy).")
@click.option("--lease-renew", type=click.FloatRange(0.1, 60.0), default=None,
              help="Seconds between Lease renewals (default 2; keep it at most a quarter of the "
                   "cluster's node grace period).")
@client_options
def join_command(name: str, data_dir: str, address: str, servers: tuple[str, ...],
                 token: str | None, token_file: str | None, ca_cert_file: str | None,
                 hollow: bool, labels: tuple[str, ...], log_port: int, proxy_mode: str,
                 lease_renew: float | None, kubeconfig: str | None, context_name: str | None) -> None:
    """Run an edge agent for this node in the foreground.

    With a join token the agent checks the cluster CA against the token's hash, then trades
    the token for this node's own credential (stored 0600 in DATA_DIR, used from then on,
    restarts included). A node may only update its own Node, Lease and pods' status.

    \b
    Example:
      TOKEN=$(edgectl token create --ttl 1h)       # with the admin kubeconfig
      edgectl node join --name n1 --data-dir /var/lib/edgeplane-node \\
          --address 10.0.0.11 --server https://10.0.0.1:6443 --token "$TOKEN"
      edgectl node join --name n1 --data-dir /var/lib/edgeplane-node   # later restarts
    """
    from controlplane.kubeconfig import KubeconfigError, load_kubeconfig
    from controlplane.master import configure_logging, read_private

    try:
        from edge_agent import AgentConfig, run_agent
    except ImportError as exc:
        raise CommandError(f"error: the edge agent is not available: {exc}") from None
    from edge_agent import JoinError, join_or_load

    if proxy_mode != "none":
        from netproxy import ProxyError, choose_mode

        try:
            choose_mode(proxy_mode)
        except ProxyError as exc:
            raise CommandError(f"error: --proxy-mode {proxy_mode}: {exc}") from None

    if token_file:
        token = read_private(token_file, "--token-file")
    log_credential = None
    try:
        credentials = join_or_load(data_dir, name, list(servers), token)
    except JoinError as exc:
        raise CommandError(f"error: {exc}") from None
    if credentials is not None:
        servers = tuple(servers) or tuple(credentials.servers)
        token, ca_cert_file = credentials.token, credentials.ca_file
        log_credential = credentials.log_credential
    if not servers:
        try:
            config = load_kubeconfig(kubeconfig, context=context_name)
        except KubeconfigError as exc:
            raise CommandError(f"error: no --server given and {exc}") from None
        servers = config.servers
        token = token or config.token
    parsed = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise CommandError(f"error: --label {label!r} must be KEY=VALUE")
        parsed[key] = value
    agent_config = AgentConfig(node_name=name, data_dir=data_dir, address=address,
                               servers=list(servers), token=token, labels=parsed,
                               verify=ca_cert_file or True, log_port=log_port,
                               log_credential=log_credential,
                               runtime="hollow" if hollow else "docker",
                               proxy_mode=None if proxy_mode == "none" else proxy_mode)
    if lease_renew is not None:
        agent_config.lease_renew = lease_renew
    configure_logging("node", name)

    async def main() -> None:
        import signal

        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(lambda task_status: run_agent(agent_config,
                                                                  task_status=task_status))
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass


@node_group.command("list")
@client_options
@run_async
async def list_command(kubeconfig: str | None, context_name: str | None) -> None:
    """Nodes with readiness, schedulability, address and pod count.

    \b
    Example:
      edgectl node list
    """
    async with make_client(kubeconfig, context_name) as client:
        nodes = await client.list_all("nodes")
        pods = await client.list_all("pods", all_namespaces=True)
    count: dict[str, int] = {}
    for pod in pods.get("items", []):
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            count[node] = count.get(node, 0) + 1
    rows = []
    for node in nodes.get("items", []):
        meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
        ready = next((c.get("status") for c in status.get("conditions") or []
                      if c.get("type") == "Ready"), "Unknown")
        state = {"True": "Ready", "False": "NotReady"}.get(ready or "", "Unknown")
        if spec.get("unschedulable"):
            state += ",SchedulingDisabled"
        address = next((a.get("address") for a in status.get("addresses") or []
                        if a.get("type") == "InternalIP"), "")
        rows.append([meta["name"], state, address, str(count.get(meta["name"], 0))])
    print_table(["NAME", "STATUS", "ADDRESS", "PODS"], rows)


@node_group.command("revoke")
@click.argument("name")
@client_options
@run_async
async def revoke_command(name: str, kubeconfig: str | None, context_name: str | None) -> None:
    """Revoke node NAME's credentials: its agent gets 401 from then on (its Node object and
    pods stay; delete them with `edgectl delete node NAME`). To let it back, join it again
    with a new join token after deleting DATA_DIR/node-credentials.json on the node.

    \b
    Example:
      edgectl node revoke n3
    """
    async with make_client(kubeconfig, context_name) as client:
        answer = await client.request_json("POST", f"/edgeplane/v1/nodes/{name}/revoke")
    revoked = answer.get("revoked") or []
    if not revoked:
        raise CommandError(f"error: node {name} has no credentials to revoke")
    click.echo(f"node {name}: {len(revoked)} credential(s) revoked")
