"""``edgectl``: the operator's command line for edgeplane.

Shell completion (click's): add one line to your shell's startup file::

    bash:  eval "$(_EDGECTL_COMPLETE=bash_source edgectl)"
    zsh:   eval "$(_EDGECTL_COMPLETE=zsh_source edgectl)"
    fish:  _EDGECTL_COMPLETE=fish_source edgectl | source
"""

from __future__ import annotations

import importlib
import sys

import click

from ._cluster import cluster_group, node_group
from ._local import down_command, up_command
from ._master import master_group

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


@click.group(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(package_name="edgeplane", prog_name="edgectl")
def cli() -> None:
    """edgeplane: a Raft-replicated, Kubernetes-shaped control plane for edge clusters."""


cli.add_command(master_group)
cli.add_command(up_command)
cli.add_command(down_command)
cli.add_command(cluster_group)
cli.add_command(node_group)


def _register_optional() -> None:
    """Commands from modules that may not exist yet (kept out of the import of this module)."""
    try:
        from ._resources import register as register_resources
    except ImportError:
        pass
    else:
        register_resources(cli)
    try:
        from ._image import image_group
    except ImportError:
        pass
    else:
        cli.add_command(image_group)
    for module in ("._token", "._scenario"):
        try:
            mod = importlib.import_module(module, __package__)
        except ImportError:
            continue
        for attr in ("token_group", "scenario_group"):
            group = getattr(mod, attr, None)
            if isinstance(group, click.Command):
                cli.add_command(group)


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


_register_optional()


def main() -> None:
    cli(prog_name="edgectl")


if __name__ == "__main__":
    main()
