"""``edgectl token create|list|delete``: join tokens and named API tokens."""

from __future__ import annotations

import json

import click

from controlplane._security import parse_duration

from ._common import CommandError, client_options, make_client, run_async
from ._output import print_table

__all__ = ["token_group"]


@click.group("token")
def token_group() -> None:
    """Join tokens (for nodes and masters) and named API tokens (admin or viewer).

    \b
    Examples:
      edgectl token create                          # a node join token, valid 24h
      edgectl token create --role master --ttl 1h   # a master join token
      edgectl token create --role viewer --name alice --ttl 0
      edgectl token list
      edgectl token delete 3f2a9c01
    """


@token_group.command("create")
@click.option("--role", type=click.Choice(["node", "master", "admin", "viewer"]), default="node",
              show_default=True,
              help="node/master: a join token (pins the cluster CA); admin/viewer: a named API "
                   "token (viewer: get/list/watch only).")
@click.option("--ttl", default=None, metavar="DURATION",
              help="Lifetime, e.g. 30m, 24h, 7d; 0: never expires (default: 24h for join "
                   "tokens, no expiry for named tokens).")
@click.option("--name", default="",
              help="The user a named token authenticates as (required for admin/viewer).")
@click.option("--description", default="", help="A note shown by `token list`.")
@client_options
@run_async
async def create_command(role: str, ttl: str | None, name: str, description: str,
                         kubeconfig: str | None, context_name: str | None) -> None:
    """Create a token and print it (the only time its secret is shown).

    A join token looks like K10<sha256 of the cluster CA>::<id>.<secret>: whoever joins with it
    checks the CA it is shown against the hash before sending the secret. A node joined with a
    node token gets its own credential and never uses the join token again.

    \b
    Examples:
      edgectl node join --name n1 --data-dir /var/lib/edgeplane-node \\
          --server https://10.0.0.1:6443 --token "$(edgectl token create --ttl 1h)"
      edgectl master join --token "$(edgectl token create --role master)" --server ... --name m4 ...
      edgectl token create --role viewer --name alice > alice.token
      kubectl --token "$(cat alice.token)" get pods      # reads work, writes are 403
    """
    kind = "join" if role in ("node", "master") else "auth"
    if kind == "auth" and not name:
        raise CommandError(f"error: --name is required for a {role} token (the user it acts as)")
    if kind == "join" and name:
        raise CommandError("error: --name is for admin and viewer tokens; join tokens get "
                           "a --description")
    try:
        seconds = parse_duration(ttl) if ttl is not None else (86400.0 if kind == "join" else 0.0)
    except ValueError as exc:
        raise CommandError(f"error: --ttl: {exc}") from None
    body = {"kind": kind, "role": role, "ttlSeconds": seconds or None, "name": name,
            "description": description}
    async with make_client(kubeconfig, context_name) as client:
        answer = await client.request_json("POST", "/edgeplane/v1/tokens", json_body=body)
    record = answer.get("record") or {}
    click.echo(answer["token"])
    click.echo(f"token {record.get('id')} ({role}"
               + (f", user {name}" if name else "")
               + f"), expires {record.get('expires') or 'never'}", err=True)


@token_group.command("list")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@client_options
@run_async
async def list_command(output: str, kubeconfig: str | None, context_name: str | None) -> None:
    """Tokens with id, kind, role, user or node, expiry (never their secrets).

    \b
    Examples:
      edgectl token list
      edgectl token list -o json
    """
    async with make_client(kubeconfig, context_name) as client:
        answer = await client.request_json("GET", "/edgeplane/v1/tokens")
    items = answer.get("items") or []
    if output == "json":
        click.echo(json.dumps(items, indent=2))
        return
    rows = []
    for item in items:
        kind = {"join": "join", "auth": "api"}.get(item.get("kind"), item.get("kind", ""))
        expires = item.get("expires") or "never"
        if item.get("expired"):
            expires += " (expired)"
        rows.append([item.get("id", ""), kind, item.get("role", ""), item.get("name") or "",
                     item.get("created", ""), expires, item.get("description") or ""])
    print_table(["ID", "KIND", "ROLE", "USER/NODE", "CREATED", "EXPIRES", "DESCRIPTION"], rows)


@token_group.command("delete")
@click.argument("token_ids", nargs=-1, required=True, metavar="ID...")
@client_options
@run_async
async def delete_command(token_ids: tuple[str, ...], kubeconfig: str | None,
                         context_name: str | None) -> None:
    """Revoke tokens: join tokens stop working at once, API tokens get 401 from then on.

    \b
    Example:
      edgectl token delete 3f2a9c01
    """
    async with make_client(kubeconfig, context_name) as client:
        for token_id in token_ids:
            await client.request_json("DELETE", f"/edgeplane/v1/tokens/{token_id}")
            click.echo(f"token {token_id} deleted")
