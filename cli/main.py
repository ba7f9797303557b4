"""``edgectl``: the operator's command line for edgeplane.

Shell completion (click's): add one line to your shell's startup file::

    bash:  eval "$(_EDGECTL_COMPLETE=bash_source edgectl)"
    zsh:   eval "$(_EDGECTL_COMPLETE=zsh_source edgectl)"
    fish:  _EDGECTL_COMPLETE=fish_source edgectl | source
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from ._cluster import cluster_group, node_group

__all__ = ["cli", "main"]

# The benchmarks a `bench/<name>.py` module may provide (each has main(argv) -> int | None).
BENCHMARKS = ("store", "api", "scheduler", "agent", "proxy", "scale", "failover")

_EPILOG = """\b
Examples:
  edgectl up --dir /tmp/c1 --masters 3          # a local 3-master cluster
  export KUBECONFIG=/tmp/c1/kubeconfig
  edgectl apply -f app.yaml
  edgectl get pods -o wide
  edgectl cluster status
  edgectl down --dir /tmp/c1

\b
Shell completion: eval "$(_EDGECTL_COMPLETE=bash_source edgectl)"   (zsh: zsh_source)
"""


class _LazyGroup(click.Group):
    """A group whose heaviest subcommands are imported only when named: `up`/`down` and
    `master` load the Raft store and the TLS machinery (~26 MB), the resource commands YAML
    and table rendering (~3 MB), none of which `edgectl node join` -- the agent process on a
    small edge machine -- needs."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy or {})  # command name -> (module, attribute)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy and cmd_name not in self.commands:
            module, attr = self._lazy[cmd_name]
            self.add_command(getattr(importlib.import_module(module, __package__), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


# Commands imported when named (see _LazyGroup): name -> (module, attribute).
_LAZY_COMMANDS = {
    "up": ("._local", "up_command"),
    "down": ("._local", "down_command"),
    "master": ("._master", "master_group"),
    **{name: ("._resources", f"{name}_command")
       for name in ("apply", "get", "describe", "delete", "scale", "logs", "cordon",
                    "uncordon", "drain")},
    "rollout": ("._resources", "rollout_group"),
}


@click.group(cls=_LazyGroup, lazy=_LAZY_COMMANDS,
             epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(package_name="edgeplane", prog_name="edgectl")
def cli() -> None:
    """edgeplane: a Raft-replicated, Kubernetes-shaped control plane for edge clusters."""


cli.add_command(cluster_group)
cli.add_command(node_group)


def _register_optional() -> None:
    """Commands from modules that may not exist yet (kept out of the import of this module)."""
    try:
        from ._image import image_group
    except ImportError:
        pass
    else:
        cli.add_command(image_group)
    for module in ("._token",):
        try:
            mod = importlib.import_module(module, __package__)
        except ImportError:
            continue
        for attr in ("token_group", "scenario_group"):
            group = getattr(mod, attr, None)
            if isinstance(group, click.Command):
                cli.add_command(group)


@cli.command("proxy", add_help_option=False,
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def proxy_command(args: tuple[str, ...]) -> None:
    """Run netproxy on its own (as every node agent does): Service VIPs and NodePorts on this
    machine from the cluster's Services and Endpoints. Its options (--help for all):
    --kubeconfig, --mode auto|nftables|userspace, --node-address, --table, --cache.

    \b
    Example:
      edgectl proxy --kubeconfig /tmp/c1/kubeconfig --mode userspace --node-address 127.0.1.9
    """
    from netproxy.__main__ import main as proxy_main

    sys.exit(proxy_main(list(args)) or 0)


@cli.command("bench", add_help_option=False,
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench_command(ctx: click.Context, name: str | None, args: tuple[str, ...]) -> None:
    """Run benchmark NAME (bench/NAME.py); the remaining arguments, --help included, are its own.

    NAME is one of: store, api, scheduler, agent, proxy, scale, failover.

    \b
    Examples:
      edgectl bench store --json
      edgectl bench api --help
    """
    if name is None or name in ("-h", "--help"):
        click.echo(ctx.get_help())
        return
    if name not in BENCHMARKS:
        raise click.UsageError(f"unknown benchmark {name!r}; one of: {', '.join(BENCHMARKS)}")
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"bench.{name}", "bench"):
            raise click.ClickException(f"benchmark {name!r} is not available (no bench/{name}.py)") from None
        raise
    entry = getattr(module, "main", None)
    if entry is None:
        raise click.ClickException(f"bench/{name}.py has no main(argv)")
    code = entry(list(args))
    sys.exit(code or 0)


@cli.group("scenario")
def scenario_group() -> None:
    """Failover scenarios (scenarios/NAME.py): each builds a cluster, injects a fault, reports.

    \b
    Examples:
      edgectl scenario list
      edgectl scenario run leader-failover --json
    """


def _scenario_modules() -> list[str]:
    import pkgutil

    try:
        import scenarios
    except ImportError:
        return []
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(scenarios.__path__)
                  if not m.name.startswith("_") and m.name not in ("demo", "harness"))


@scenario_group.command("list")
def scenario_list_command() -> None:
    """The scenarios this installation has.

    \b
    Example:
      edgectl scenario list
    """
    for name in _scenario_modules():
        click.echo(name)


@scenario_group.command("run", add_help_option=False,
                        context_settings={"ignore_unknown_options": True,
                                          "allow_extra_args": True})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def scenario_run_command(name: str, args: tuple[str, ...]) -> None:
    """Run scenario NAME; the remaining arguments (--help, --json, --kubeconfig) are its own.

    \b
    Example:
      edgectl scenario run node-loss --json
    """
    module_name = f"scenarios.{name.replace('-', '_')}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name in (module_name, "scenarios"):
            known = ", ".join(_scenario_modules()) or "none"
            raise click.ClickException(f"no scenario {name!r} (available: {known})") from None
        raise
    # A scenario module offers main(argv), or SCENARIO (scenarios/_runner.py) with .main(argv).
    entry = getattr(module, "main", None) or getattr(getattr(module, "SCENARIO", None), "main", None)
    if entry is None:
        raise click.ClickException(f"{module_name} has no main(argv)")
    sys.exit(entry(list(args)) or 0)


_register_optional()


def main() -> None:
    cli(prog_name="edgectl")


if __name__ == "__main__":
    main()
