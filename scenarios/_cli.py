"""``edgectl scenario list|run NAME``: the failover drills from the command line."""

from __future__ import annotations

import click

from ._registry import NAMES, SCENARIOS

__all__ = ["scenario_group"]


class _RunGroup(click.Group):
    """``scenario run NAME [OPTIONS]``: each scenario's own command, loaded when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(NAMES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in NAMES:
            return None
        return SCENARIOS[name].command()


@click.group("scenario", help="Failover scenarios: build a cluster, load it, break it, measure, report.")
def scenario_group() -> None:
    pass


@scenario_group.group("run", cls=_RunGroup, epilog="""\b
Examples:
  edgectl scenario run leader-failover
  edgectl scenario run node-loss --ci --json
  edgectl scenario run edge-autonomy --outage 120
  edgectl scenario run rolling-restart --kubeconfig /tmp/c1/kubeconfig
""")
def run_group() -> None:
    """Run scenario NAME; it prints a report and exits non-zero when a check fails."""


@scenario_group.command("list")
def list_command() -> None:
    """The scenarios and what each one checks."""
    width = max(len(n) for n in NAMES)
    for name in NAMES:
        click.echo(f"{name.ljust(width)}  {SCENARIOS[name].summary}")
