"""kubectl-style resource commands over the kubeconfig: apply, get, describe, delete, scale,
rollout, logs, cordon, uncordon, drain.

They hold no cluster logic: tables come from the server (``as=Table``), validation and
defaulting happen in the API server, rollouts are done by the controllers; these commands only
send requests and print answers the way kubectl does.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
import trio
import yaml

from controlplane.client import ApiClient, ApiError, ClusterUnreachable, Resource, status_of

from ._common import CommandError, client_options, format_api_error, make_client, run_async
from ._output import print_table, render_object, resource_name

__all__ = ["register"]

_TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
# kubectl's default for `rollout status` and `drain` waits: long enough for a real rollout.
_WAIT_TIMEOUT_S = 300.0
# Poll interval of `rollout status` and `drain` between watch wake-ups.
_POLL_S = 0.5
# The annotation the deployment controller puts on ReplicaSets (kubectl reads the same one).
_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_YAML_EXTENSIONS = (".yaml", ".yml", ".json")


def _ns_option(fn: Any) -> Any:
    return click.option("-n", "--namespace", default=None,
                        help="Namespace (default: the kubeconfig context's).")(fn)


# ---------------------------------------------------------------------------------- helpers


def _split_targets(args: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """``pods web db`` / ``pod/web deploy/api`` / ``pods,svc`` -> [(type, name | None)]."""
    if not args:
        raise CommandError("error: you must specify the type of resource (e.g. pods, nodes)")
    if all("/" in a for a in args):
        out: list[tuple[str, str | None]] = []
        for arg in args:
            kind, _, name = arg.partition("/")
            if not kind or not name:
                raise CommandError(f"error: {arg!r} must be TYPE/NAME")
            out.append((kind, name))
        return out
    if any("/" in a for a in args):
        raise CommandError("error: there is no need to specify a resource type as a separate "
                           "argument when passing arguments in resource/name form")
    types = [t for t in args[0].split(",") if t]
    names = list(args[1:])
    if names and len(types) > 1:
        raise CommandError("error: names can only be given with a single resource type")
    if names:
        return [(types[0], n) for n in names]
    return [(t, None) for t in types]


async def _table(client: ApiClient, path: str, params: dict[str, Any]) -> dict[str, Any]:
    response = await client.request("GET", path, params={**params, "includeObject": "Metadata"},
                                    headers={"Accept": _TABLE_ACCEPT})
    if response.status_code >= 400:
        raise ApiError(status_of(response))
    return response.json()


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "<none>"
    return str(value)


def _table_rows(table: dict[str, Any], wide: bool, with_namespace: bool,
                kind_prefix: str | None = None) -> tuple[list[str], list[list[str]]]:
    columns = table.get("columnDefinitions") or []
    keep = [i for i, c in enumerate(columns) if wide or not c.get("priority")]
    headers = [columns[i]["name"].upper() for i in keep]
    rows = []
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        values = [_cell(cells[i]) if i < len(cells) else "" for i in keep]
        if kind_prefix and values:
            values[0] = f"{kind_prefix}/{values[0]}"
        if with_namespace:
            ns = ((row.get("object") or {}).get("metadata") or {}).get("namespace", "")
            values.insert(0, ns)
        rows.append(values)
    if with_namespace:
        headers.insert(0, "NAMESPACE")
    return headers, rows


def _kind_prefix(res: Resource) -> str:
    return f"{res.kind.lower()}.{res.group}" if res.group else res.kind.lower()


# ---------------------------------------------------------------------------------- get


@click.command("get")
@click.argument("targets", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Choice(["wide", "yaml", "json", "name"]), default=None,
              help="Output format (default: a table).")
@click.option("-l", "--selector", default=None, help="Label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", default=None, help="Field selector, e.g. spec.nodeName=n1.")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-w", "--watch", is_flag=True, help="After listing, print changes as they happen.")
@click.option("--no-headers", is_flag=True, help="Leave out the header line.")
@_ns_option
@client_options
@run_async
async def get_command(targets: tuple[str, ...], output: str | None, selector: str | None,
                      field_selector: str | None, all_namespaces: bool, watch: bool,
                      no_headers: bool, namespace: str | None, kubeconfig: str | None,
                      context_name: str | None) -> None:
    """Show resources: a table by default, or YAML, JSON or names.

    \b
    Examples:
      edgectl get pods -o wide
      edgectl get deployments.apps web -o yaml
      edgectl get pods -l app=web -A
      edgectl get nodes -w
    """
    items = _split_targets(targets)
    async with make_client(kubeconfig, context_name) as client:
        expanded: list[tuple[Resource, str | None]] = []
        for kind, name in items:
            if kind == "all" and name is None:
                expanded += [(r, None) for r in await client.resources_in_category("all")]
            else:
                expanded.append((await client.resource(kind), name))
        multi = len({r.plural for r, _ in expanded}) > 1
        for res, name in expanded:
            ns = None if (all_namespaces or not res.namespaced) else (namespace or client.namespace)
            with_ns = all_namespaces and res.namespaced
            if output in ("yaml", "json", "name"):
                if name is not None:
                    obj = await client.get(res, name, namespace=ns)
                    objs = [obj]
                    doc: Any = obj
                else:
                    doc = await client.list(res, namespace=ns, all_namespaces=all_namespaces,
                                            label_selector=selector, field_selector=field_selector)
                    objs = doc.get("items") or []
                    for obj in objs:
                        obj.setdefault("apiVersion", res.api_version)
                        obj.setdefault("kind", res.kind)
                    doc = {"apiVersion": "v1", "kind": "List", "items": objs,
                           "metadata": {"resourceVersion": ""}}
                if output == "name":
                    for obj in objs:
                        click.echo(resource_name(obj, res.plural, res.group))
                else:
                    click.echo(render_object(doc, output))
            else:
                path = res.path(ns, name)
                table = await _table(client, path, {"labelSelector": selector,
                                                    "fieldSelector": field_selector})
                headers, rows = _table_rows(table, output == "wide", with_ns,
                                            _kind_prefix(res) if multi else None)
                if not rows and not watch:
                    where = "" if all_namespaces or not res.namespaced else f" in {ns} namespace"
                    click.echo(f"No resources found{where}.", err=True)
                else:
                    print_table(headers, rows, no_headers=no_headers)
                if multi:
                    click.echo()
            if watch:
                rv = None
                if name is None:
                    listed = await client.list(res, namespace=ns, all_namespaces=all_namespaces,
                                               label_selector=selector,
                                               field_selector=field_selector)
                    rv = listed["metadata"].get("resourceVersion")
                else:
                    rv = (await client.get(res, name, namespace=ns))["metadata"]["resourceVersion"]
                await _watch(client, res, ns, name, rv, selector, field_selector, output,
                             with_ns, all_namespaces)


async def _watch(client: ApiClient, res: Resource, ns: str | None, name: str | None, rv: str | None,
                 selector: str | None, field_selector: str | None, output: str | None,
                 with_ns: bool, all_namespaces: bool) -> None:
    if name is not None:
        extra = f"metadata.name={name}"
        field_selector = f"{field_selector},{extra}" if field_selector else extra
    async for event in client.watch(res, namespace=ns, all_namespaces=all_namespaces,
                                    resource_version=rv, label_selector=selector,
                                    field_selector=field_selector):
        if event["type"] == "RELISTED":
            continue
        obj = event["object"]
        meta = obj.get("metadata") or {}
        if output in ("yaml", "json"):
            click.echo(render_object(obj, output) + ("\n---" if output == "yaml" else ""))
        elif output == "name":
            click.echo(resource_name(obj, res.plural, res.group))
        elif event["type"] == "DELETED":
            prefix = [meta.get("namespace", "")] if with_ns else []
            print_table(["X"] * (len(prefix) + 2), [[*prefix, meta.get("name", ""), "(deleted)"]],
                        no_headers=True)
        else:
            try:
                table = await _table(client, res.path(meta.get("namespace"), meta.get("name")), {})
            except ApiError:
                continue  # deleted again in between; its DELETED event follows
            headers, rows = _table_rows(table, output == "wide", with_ns)
            print_table(headers, rows, no_headers=True)
        sys.stdout.flush()


# ---------------------------------------------------------------------------------- apply


def _load_documents(paths: tuple[str, ...], recursive: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """(source, object) for every document in the files, folders and '-' given."""
    files: list[tuple[str, str]] = []
    for path in paths:
        if path == "-":
            files.append(("<stdin>", sys.stdin.read()))
            continue
        p = pathlib.Path(path)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix in _YAML_EXTENSIONS)
            if not found:
                raise CommandError(f"error: no .yaml, .yml or .json files in {path}")
            files.extend((str(f), f.read_text()) for f in found)
        elif p.is_file():
            files.append((str(p), p.read_text()))
        else:
            raise CommandError(f'error: the path "{path}" does not exist')
    for source, text in files:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise CommandError(f"error: {source} is not valid YAML: {exc}") from None
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise CommandError(f"error: {source}: each document must be an object")
            if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
                for item in doc["items"]:
                    yield source, item
            else:
                yield source, doc


# kubectl's annotation: what the last apply sent, so the next one can remove what was dropped.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _annotate(obj: dict[str, Any], applied: str) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), LAST_APPLIED: applied}
    return {**obj, "metadata": meta}


def _apply_patch(last: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch that sets ``desired`` and deletes (null) the fields the last apply
    set but this one no longer has; fields nobody applied (defaults, status) stay."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        before = last.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = _apply_patch(before, value)
        else:
            patch[key] = value
    for key in last:
        if key not in desired:
            patch[key] = None
    return patch


async def _apply_one(client: ApiClient, obj: dict[str, Any], namespace: str | None,
                     source: str) -> str:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    meta = obj.get("metadata") or {}
    if not api_version or not kind:
        raise CommandError(f"error: {source}: a document has no apiVersion or kind")
    if not meta.get("name"):
        raise CommandError(f"error: {source}: {kind} has no metadata.name")
    res = await client.resource_for_kind(api_version, kind)
    ns = None
    if res.namespaced:
        ns = meta.get("namespace") or namespace or client.namespace
        if namespace and meta.get("namespace") and meta["namespace"] != namespace:
            raise CommandError(f"error: {source}: {kind} {meta['name']} is in namespace "
                               f"{meta['namespace']}, not {namespace}")
        obj = {**obj, "metadata": {**meta, "namespace": ns}}
    label = f"{_kind_prefix(res)}/{meta['name']}"
    desired = {k: v for k, v in obj.items() if k != "status"}
    applied = json.dumps(desired, sort_keys=True, separators=(",", ":"))
    with_annotation = _annotate(desired, applied)
    try:
        current = await client.get(res, meta["name"], namespace=ns)
    except ApiError as exc:
        if exc.code != 404:
            raise
        await client.create(res, with_annotation, namespace=ns)
        return f"{label} created"
    last_text = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        last = json.loads(last_text) if last_text else {}
    except ValueError:
        last = {}
    patch = _apply_patch(last if isinstance(last, dict) else {}, with_annotation)
    updated = await client.patch(res, meta["name"], patch, namespace=ns, patch_type="merge")
    if updated["metadata"].get("resourceVersion") == current["metadata"].get("resourceVersion"):
        return f"{label} unchanged"
    return f"{label} configured"


# An apply whose outcome a failover left unknown is simply applied again: it is declarative.
_APPLY_ATTEMPTS = 5


async def _apply_retrying(client: ApiClient, obj: dict[str, Any], namespace: str | None,
                          source: str) -> str:
    for attempt in range(1, _APPLY_ATTEMPTS + 1):
        try:
            return await _apply_one(client, obj, namespace, source)
        except ClusterUnreachable as exc:
            if not exc.maybe_committed or attempt == _APPLY_ATTEMPTS:
                raise
        except ApiError as exc:
            # 504: maybe applied; AlreadyExists: our own earlier attempt (or a racing creator)
            # got there first; Conflict: the object changed between our read and our write.
            retry = exc.code == 504 or exc.code == 409
            if not retry or attempt == _APPLY_ATTEMPTS:
                raise
        await trio.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


@click.command("apply")
@click.option("-f", "--filename", "filenames", multiple=True, required=True,
              help="A file, a folder of .yaml/.yml/.json files, or '-' for stdin (repeatable).")
@click.option("-R", "--recursive", is_flag=True, help="Descend into folders.")
@_ns_option
@client_options
@run_async
async def apply_command(filenames: tuple[str, ...], recursive: bool, namespace: str | None,
                        kubeconfig: str | None, context_name: str | None) -> None:
    """Create or update resources from YAML/JSON (multi-document files are fine).

    Existing objects are updated with a JSON merge patch of the given fields.

    \b
    Examples:
      edgectl apply -f app.yaml
      edgectl apply -f manifests/ -R
      cat pod.yaml | edgectl apply -f -
    """
    docs = list(_load_documents(filenames, recursive))
    if not docs:
        raise CommandError("error: no objects passed to apply")
    failed = 0
    async with make_client(kubeconfig, context_name) as client:
        for source, obj in docs:
            try:
                click.echo(await _apply_retrying(client, obj, namespace, source))
            except ApiError as exc:
                failed += 1
                click.echo(f"{source}: {format_api_error(exc)}", err=True)
    if failed:
        raise CommandError(f"error: {failed} of {len(docs)} object(s) failed")


# ---------------------------------------------------------------------------------- describe


def _describe_block(data: Any, indent: int = 2) -> str:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")
    return "\n".join(" " * indent + line for line in text.splitlines())


def _conditions(status: dict[str, Any]) -> None:
    conditions = status.get("conditions") or []
    if conditions:
        click.echo("Conditions:")
        print_table(["  TYPE", "STATUS", "REASON", "MESSAGE"],
                    [["  " + str(c.get("type", "")), str(c.get("status", "")),
                      str(c.get("reason", "")), str(c.get("message", ""))] for c in conditions])


def _describe_pod(pod: dict[str, Any]) -> None:
    """The parts of ``kubectl describe pod`` an operator reads first."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    click.echo(f"Node:         {spec.get('nodeName') or '<none>'}")
    click.echo(f"Status:       {status.get('phase', 'Unknown')}")
    click.echo(f"IP:           {status.get('podIP') or '<none>'}")
    states = {c.get("name"): c for c in status.get("containerStatuses") or []}
    click.echo("Containers:")
    for container in spec.get("containers") or []:
        st = states.get(container.get("name"), {})
        state = st.get("state") or {}
        current = next(iter(state), "waiting")
        detail = (state.get(current) or {}).get("reason", "")
        click.echo(f"  {container.get('name')}:")
        click.echo(f"    Image:          {container.get('image')}")
        ports = ", ".join(f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}"
                          for p in container.get("ports") or [])
        click.echo(f"    Ports:          {ports or '<none>'}")
        click.echo(f"    State:          {current.capitalize()}" + (f" ({detail})" if detail else ""))
        click.echo(f"    Ready:          {st.get('ready', False)}")
        click.echo(f"    Restart Count:  {st.get('restartCount', 0)}")
    _conditions(status)
    tolerations = spec.get("tolerations") or []
    if tolerations:
        click.echo("Tolerations:  " + ", ".join(
            f"{t.get('key', '')}:{t.get('effect', '')}"
            + (f" for {t['tolerationSeconds']}s" if t.get("tolerationSeconds") is not None else "")
            for t in tolerations))


def _describe_node(node: dict[str, Any]) -> None:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    addresses = ", ".join(f"{a.get('type')}={a.get('address')}" for a in status.get("addresses") or [])
    click.echo(f"Addresses:    {addresses or '<none>'}")
    taints = ", ".join(f"{t.get('key')}:{t.get('effect')}" for t in spec.get("taints") or [])
    click.echo(f"Taints:       {taints or '<none>'}")
    click.echo(f"Unschedulable: {bool(spec.get('unschedulable'))}")
    for title, key in (("Capacity", "capacity"), ("Allocatable", "allocatable")):
        values = status.get(key) or {}
        if values:
            click.echo(f"{title}:")
            for name, value in values.items():
                click.echo(f"  {name}: {value}")
    _conditions(status)


async def _events_for(client: ApiClient, obj: dict[str, Any]) -> list[list[str]]:
    meta = obj["metadata"]
    try:
        events = await client.list("events", namespace=meta.get("namespace") or "default")
    except ApiError:
        return []
    rows = []
    for event in events.get("items") or []:
        involved = event.get("involvedObject") or event.get("regarding") or {}
        if involved.get("uid") != meta.get("uid") and not (
            involved.get("name") == meta.get("name") and involved.get("kind") == obj.get("kind")
        ):
            continue
        rows.append([event.get("type", ""), event.get("reason", ""),
                     event.get("lastTimestamp") or event.get("eventTime") or "",
                     (event.get("source") or {}).get("component", "") or
                     event.get("reportingController", ""),
                     event.get("message", "")])
    rows.sort(key=lambda r: r[2])
    return rows


@click.command("describe")
@click.argument("targets", nargs=-1, required=True)
@_ns_option
@client_options
@run_async
async def describe_command(targets: tuple[str, ...], namespace: str | None,
                           kubeconfig: str | None, context_name: str | None) -> None:
    """Show one or more resources in detail, with the events about them.

    \b
    Examples:
      edgectl describe pod web-7d4b9
      edgectl describe deployment/web
      edgectl describe nodes
    """
    async with make_client(kubeconfig, context_name) as client:
        for kind, name in _split_targets(targets):
            res = await client.resource(kind)
            ns = (namespace or client.namespace) if res.namespaced else None
            if name is None:
                objs = (await client.list(res, namespace=ns)).get("items") or []
            else:
                objs = [await client.get(res, name, namespace=ns)]
            for obj in objs:
                obj.setdefault("kind", res.kind)
                meta = obj["metadata"]
                click.echo(f"Name:         {meta['name']}")
                if res.namespaced:
                    click.echo(f"Namespace:    {meta.get('namespace', '')}")
                labels = meta.get("labels") or {}
                click.echo("Labels:       " + (", ".join(f"{k}={v}" for k, v in labels.items())
                                               or "<none>"))
                # kubectl leaves out its own bookkeeping annotation too.
                annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                               if k != LAST_APPLIED}
                click.echo("Annotations:  " + (", ".join(f"{k}={v}" for k, v in
                                                        annotations.items()) or "<none>"))
                click.echo(f"Created:      {meta.get('creationTimestamp', '')}")
                for owner in meta.get("ownerReferences") or []:
                    click.echo(f"Controlled By: {owner.get('kind')}/{owner.get('name')}")
                if res.kind == "Pod" and not res.group:
                    _describe_pod(obj)
                elif res.kind == "Node" and not res.group:
                    _describe_node(obj)
                else:
                    for section in ("spec", "data", "status"):
                        if obj.get(section):
                            click.echo(f"{section.capitalize()}:")
                            click.echo(_describe_block(obj[section]))
                rows = await _events_for(client, obj)
                click.echo("Events:" + ("  <none>" if not rows else ""))
                if rows:
                    print_table(["  TYPE", "REASON", "LAST SEEN", "FROM", "MESSAGE"],
                                [["  " + r[0], *r[1:]] for r in rows])
                click.echo()


# ---------------------------------------------------------------------------------- delete


@click.command("delete")
@click.argument("targets", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True,
              help="Delete the objects described in these files ('-' for stdin).")
@click.option("-l", "--selector", default=None, help="Delete every object matching this selector.")
@click.option("--all", "delete_all", is_flag=True, help="Delete every object of the type.")
@click.option("--grace-period", type=int, default=None,
              help="Seconds a pod gets to stop (0: immediately).")
@click.option("--cascade", type=click.Choice(["background", "foreground", "orphan"]),
              default="background", show_default=True, help="What happens to dependents.")
@click.option("--ignore-not-found", is_flag=True, help="A missing object is not an error.")
@_ns_option
@client_options
@run_async
async def delete_command(targets: tuple[str, ...], filenames: tuple[str, ...], selector: str | None,
                         delete_all: bool, grace_period: int | None, cascade: str,
                         ignore_not_found: bool, namespace: str | None, kubeconfig: str | None,
                         context_name: str | None) -> None:
    """Delete resources by name, by label selector, or as described in files.

    \b
    Examples:
      edgectl delete pod web-7d4b9
      edgectl delete deployment/web service/web
      edgectl delete pods -l app=web
      edgectl delete -f app.yaml
    """
    policy = cascade.capitalize()
    work: list[tuple[Resource, str | None, str]] = []
    async with make_client(kubeconfig, context_name) as client:
        if filenames:
            for _, obj in _load_documents(filenames, False):
                res = await client.resource_for_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
                meta = obj.get("metadata") or {}
                ns = (meta.get("namespace") or namespace or client.namespace) if res.namespaced else None
                work.append((res, ns, meta.get("name", "")))
        else:
            for kind, name in _split_targets(targets):
                res = await client.resource(kind)
                ns = (namespace or client.namespace) if res.namespaced else None
                if name is not None:
                    work.append((res, ns, name))
                elif selector or delete_all:
                    listed = await client.list(res, namespace=ns, label_selector=selector)
                    work += [(res, ns, o["metadata"]["name"]) for o in listed.get("items") or []]
                else:
                    raise CommandError("error: resource(s) were provided, but no name was "
                                       "specified (give names, -l SELECTOR or --all)")
        if not work:
            click.echo("No resources found", err=True)
        failed = False
        for res, ns, name in work:
            try:
                await client.delete(res, name, namespace=ns, propagation_policy=policy,
                                    grace_period_seconds=grace_period)
                click.echo(f'{_kind_prefix(res)} "{name}" deleted')
            except ApiError as exc:
                if exc.code == 404 and ignore_not_found:
                    continue
                click.echo(format_api_error(exc), err=True)
                failed = True
    if failed:
        raise CommandError("error: some objects could not be deleted")


# ---------------------------------------------------------------------------------- scale


@click.command("scale")
@click.argument("targets", nargs=-1, required=True)
@click.option("--replicas", type=click.IntRange(0), required=True, help="The new replica count.")
@_ns_option
@client_options
@run_async
async def scale_command(targets: tuple[str, ...], replicas: int, namespace: str | None,
                        kubeconfig: str | None, context_name: str | None) -> None:
    """Set the replica count of a Deployment or ReplicaSet (its scale subresource).

    \b
    Examples:
      edgectl scale deployment/web --replicas 5
      edgectl scale deployments web api --replicas 0
    """
    async with make_client(kubeconfig, context_name) as client:
        for kind, name in _split_targets(targets):
            if name is None:
                raise CommandError("error: give the name of the object to scale")
            res = await client.resource(kind)
            ns = (namespace or client.namespace) if res.namespaced else None
            await client.patch(res, name, {"spec": {"replicas": replicas}}, namespace=ns,
                               subresource="scale")
            click.echo(f"{_kind_prefix(res)}/{name} scaled")


# ---------------------------------------------------------------------------------- rollout


@click.group("rollout", help="Follow or undo the rollout of a Deployment.")
def rollout_group() -> None:
    pass


def _rollout_progress(dep: dict[str, Any]) -> tuple[bool, str]:
    """kubectl's rollout status messages (DeploymentStatusViewer), from the Deployment alone."""
    name = dep["metadata"]["name"]
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    if dep["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return False, "Waiting for deployment spec update to be observed..."
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise CommandError(f'error: deployment "{name}" exceeded its progress deadline')
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < want:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {updated} out of '
                       f"{want} new replicas have been updated...")
    if total > updated:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {total - updated} '
                       "old replicas are pending termination...")
    if available < updated:
        return False, (f'Waiting for deployment "{name}" rollout to finish: {available} of '
                       f"{updated} updated replicas are available...")
    return True, f'deployment "{name}" successfully rolled out'


def _deployment_target(targets: tuple[str, ...]) -> str:
    items = _split_targets(targets)
    if len(items) != 1 or items[0][1] is None:
        raise CommandError("error: give one deployment, e.g. deployment/web")
    kind, name = items[0]
    if kind.split(".")[0] not in ("deployment", "deployments", "deploy"):
        raise CommandError(f"error: rollout supports deployments, not {kind}")
    assert name is not None
    return name


@rollout_group.command("status")
@click.argument("targets", nargs=-1, required=True)
@click.option("--timeout", type=float, default=_WAIT_TIMEOUT_S, show_default=True,
              help="Seconds to wait before giving up.")
@click.option("-w", "--watch/--no-watch", default=True, show_default=True,
              help="Wait for the rollout to finish.")
@_ns_option
@client_options
@run_async
async def rollout_status_command(targets: tuple[str, ...], timeout: float, watch: bool,
                                 namespace: str | None, kubeconfig: str | None,
                                 context_name: str | None) -> None:
    """Wait until a Deployment's rollout finishes, printing progress.

    \b
    Examples:
      edgectl rollout status deployment/web
      edgectl rollout status deploy web --timeout 60
    """
    name = _deployment_target(targets)
    async with make_client(kubeconfig, context_name) as client:
        ns = namespace or client.namespace
        last = ""
        with trio.move_on_after(timeout) as scope:
            while True:
                dep = await client.get("deployments.apps", name, namespace=ns)
                done, message = _rollout_progress(dep)
                if message != last:
                    click.echo(message)
                    last = message
                if done or not watch:
                    return
                await trio.sleep(_POLL_S)
        if scope.cancelled_caught:
            raise CommandError(f"error: timed out after {timeout:.0f}s waiting for the rollout")


@rollout_group.command("undo")
@click.argument("targets", nargs=-1, required=True)
@click.option("--to-revision", type=int, default=0, help="Revision to go back to (0: previous).")
@_ns_option
@client_options
@run_async
async def rollout_undo_command(targets: tuple[str, ...], to_revision: int, namespace: str | None,
                               kubeconfig: str | None, context_name: str | None) -> None:
    """Roll a Deployment back to its previous (or a given) revision.

    \b
    Examples:
      edgectl rollout undo deployment/web
      edgectl rollout undo deployment/web --to-revision 2
    """
    name = _deployment_target(targets)
    async with make_client(kubeconfig, context_name) as client:
        ns = namespace or client.namespace
        dep = await client.get("deployments.apps", name, namespace=ns)
        uid = dep["metadata"]["uid"]
        sets = (await client.list("replicasets.apps", namespace=ns)).get("items") or []
        owned = []
        for rs in sets:
            owners = rs["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners):
                rev = (rs["metadata"].get("annotations") or {}).get(_REVISION_ANNOTATION, "0")
                owned.append((int(rev) if str(rev).isdigit() else 0, rs))
        owned.sort(key=lambda pair: pair[0])
        if not owned:
            raise CommandError(f'error: no rollout history found for deployment "{name}"')
        current = owned[-1][0]
        if to_revision:
            target = next((rs for rev, rs in owned if rev == to_revision), None)
            if target is None:
                raise CommandError(f"error: unable to find specified revision {to_revision} in history")
        else:
            previous = [rs for rev, rs in owned if rev < current]
            if not previous:
                raise CommandError("error: no previous revision to roll back to")
            target = previous[-1]
        template = json.loads(json.dumps(target["spec"]["template"]))
        (template.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
        await client.patch("deployments.apps", name, [
            {"op": "replace", "path": "/spec/template", "value": template}
        ], namespace=ns, patch_type="json")
        click.echo(f"deployment.apps/{name} rolled back")


# ---------------------------------------------------------------------------------- logs


@click.command("logs")
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Container (default: the only one).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("--previous", is_flag=True, help="The previous (restarted) container's log.")
@_ns_option
@client_options
@run_async
async def logs_command(pod: str, container: str | None, follow: bool, tail: int | None,
                       previous: bool, namespace: str | None, kubeconfig: str | None,
                       context_name: str | None) -> None:
    """Print a pod's container log (served by its node's agent through the API).

    \b
    Examples:
      edgectl logs web-7d4b9
      edgectl logs -f web-7d4b9 -c nginx --tail 20
    """
    if pod.startswith("pod/") or pod.startswith("pods/"):
        pod = pod.split("/", 1)[1]
    async with make_client(kubeconfig, context_name) as client:
        ns = namespace or client.namespace
        res = await client.resource("pods")
        params = {"container": container, "follow": "true" if follow else None,
                  "tailLines": tail, "previous": "true" if previous else None}
        params = {k: v for k, v in params.items() if v is not None}
        async with client.stream("GET", res.path(ns, pod, "log"), params=params) as response:
            async for chunk in response.aiter_bytes():
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()


# ---------------------------------------------------------------------------------- nodes


async def _set_unschedulable(client: ApiClient, node: str, value: bool) -> bool:
    """True if it changed."""
    current = await client.get("nodes", node)
    if bool((current.get("spec") or {}).get("unschedulable")) == value:
        return False
    await client.patch("nodes", node, {"spec": {"unschedulable": value or None}})
    return True


@click.command("cordon")
@click.argument("node")
@client_options
@run_async
async def cordon_command(node: str, kubeconfig: str | None, context_name: str | None) -> None:
    """Mark a node unschedulable (running pods stay).

    \b
    Example:
      edgectl cordon n1
    """
    async with make_client(kubeconfig, context_name) as client:
        changed = await _set_unschedulable(client, node, True)
    click.echo(f"node/{node} {'cordoned' if changed else 'already cordoned'}")


@click.command("uncordon")
@click.argument("node")
@client_options
@run_async
async def uncordon_command(node: str, kubeconfig: str | None, context_name: str | None) -> None:
    """Mark a node schedulable again.

    \b
    Example:
      edgectl uncordon n1
    """
    async with make_client(kubeconfig, context_name) as client:
        changed = await _set_unschedulable(client, node, False)
    click.echo(f"node/{node} {'uncordoned' if changed else 'already uncordoned'}")


@click.command("drain")
@click.argument("node")
@click.option("--force", is_flag=True,
              help="Also delete pods no controller will replace (they are lost).")
@click.option("--grace-period", type=int, default=None, help="Seconds each pod gets to stop.")
@click.option("--timeout", type=float, default=_WAIT_TIMEOUT_S, show_default=True,
              help="Seconds to wait for the pods to go.")
@client_options
@run_async
async def drain_command(node: str, force: bool, grace_period: int | None, timeout: float,
                        kubeconfig: str | None, context_name: str | None) -> None:
    """Cordon a node and evict its pods so their controllers start them elsewhere.

    Pods without a controller are refused unless --force (nothing would replace them).

    \b
    Example:
      edgectl drain n1 --timeout 120
    """
    async with make_client(kubeconfig, context_name) as client:
        await _set_unschedulable(client, node, True)
        click.echo(f"node/{node} cordoned")
        pods = (await client.list("pods", all_namespaces=True,
                                  field_selector=f"spec.nodeName={node}")).get("items") or []
        pods = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        unmanaged = [p for p in pods
                     if not any(o.get("controller") for o in p["metadata"].get("ownerReferences") or [])]
        if unmanaged and not force:
            names = ", ".join(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in unmanaged)
            raise CommandError(f"error: cannot drain {node}: these pods have no controller and "
                               f"would be lost (use --force): {names}")
        for pod in pods:
            meta = pod["metadata"]
            try:
                await client.evict(meta["name"], namespace=meta["namespace"],
                                   grace_period_seconds=grace_period)
            except ApiError as exc:
                if exc.code != 404:
                    raise
            click.echo(f"evicting pod {meta['namespace']}/{meta['name']}")
        deadline = time.monotonic() + timeout
        remaining = {(p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"].get("uid"))
                     for p in pods}
        while remaining:
            now_pods = (await client.list("pods", all_namespaces=True,
                                          field_selector=f"spec.nodeName={node}")).get("items") or []
            present = {(p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"].get("uid"))
                       for p in now_pods}
            for gone in sorted(remaining - present):
                click.echo(f"pod/{gone[1]} evicted")
            remaining &= present
            if not remaining:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"error: timed out waiting for {len(remaining)} pod(s) to leave {node}")
            await trio.sleep(_POLL_S)
    click.echo(f"node/{node} drained")


def register(cli: click.Group) -> None:
    for command in (apply_command, get_command, describe_command, delete_command, scale_command,
                    rollout_group, logs_command, cordon_command, uncordon_command, drain_command):
        cli.add_command(command)
