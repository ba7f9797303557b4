"""Printing objects the way kubectl does: aligned tables, YAML, JSON, names."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml

__all__ = ["print_table", "render_object", "resource_name"]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, no_headers: bool = False) -> None:
    """Columns padded to the widest cell plus three spaces, as ``kubectl get`` prints them."""
    table = ([list(headers)] if not no_headers else []) + [list(map(str, r)) for r in rows]
    if not table:
        return
    widths = [max(len(row[i]) for row in table if i < len(row)) for i in range(len(headers))]
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        click.echo("   ".join(cells).rstrip())


def resource_name(obj: dict[str, Any], plural: str, group: str) -> str:
    """``-o name``: ``pod/web`` or ``deployment.apps/web``."""
    kind = (obj.get("kind") or plural).lower()
    return f"{kind}.{group}/{obj['metadata']['name']}" if group else f"{kind}/{obj['metadata']['name']}"


def render_object(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=4)
    if output == "yaml":
        return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")
    raise ValueError(output)
