"""What every edgectl command shares: client options, running async code, error messages."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import trio

from controlplane.client import ApiClient, ApiError, ClusterUnreachable, UnknownResource
from controlplane.kubeconfig import KubeconfigError, load_kubeconfig

F = TypeVar("F", bound=Callable[..., Any])

# A CLI command should give up on a dead cluster quickly enough for a person waiting at a
# prompt, yet ride out one leader election (well under a second here) without an error.
CLI_RETRY_TIMEOUT_S = 5.0


def client_options(fn: F) -> F:
    """``--kubeconfig`` and ``--context`` (kubectl's names), stored on the click context."""
    fn = click.option("--context", "context_name", default=None, metavar="NAME",
                      help="Kubeconfig context to use (default: the current context).")(fn)
    fn = click.option("--kubeconfig", default=None, metavar="FILE", envvar="EDGECTL_KUBECONFIG",
                      help="Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).")(fn)
    return fn


def make_client(kubeconfig: str | None, context_name: str | None,
                *, retry_timeout: float = CLI_RETRY_TIMEOUT_S) -> ApiClient:
    return ApiClient(load_kubeconfig(kubeconfig, context=context_name),
                     retry_timeout=retry_timeout, user_agent="edgectl")


def _leaf_errors(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(_leaf_errors(sub))
        return out
    return [exc]


def format_api_error(exc: ApiError) -> str:
    """kubectl's ``Error from server (Reason): message``, then one line per offending field."""
    text = f"Error from server ({exc.reason or exc.code}): {exc.message}"
    for cause in exc.causes:
        field = cause.get("field")
        if field:
            text += f"\n  {field}: {cause.get('message', '')} [{cause.get('reason', '')}]"
    return text


def explain(exc: BaseException) -> str | None:
    """A user-facing message for errors that are the user's or the cluster's, else None."""
    from controlplane._master_layout import MasterError

    if isinstance(exc, ApiError):
        return format_api_error(exc)
    if isinstance(exc, ClusterUnreachable):
        hint = "" if exc.maybe_committed else (
            "\nCheck that the masters run (edgectl cluster status, or the logs in the "
            "cluster directory) and that the kubeconfig lists the right addresses."
        )
        return f"error: {exc}{hint}"
    if isinstance(exc, (KubeconfigError, UnknownResource, MasterError)):
        return f"error: {exc}"
    if isinstance(exc, click.ClickException):
        return None
    return None


def run_async(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Make an async command body a click callback: trio.run it, turn known errors into messages."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return trio.run(functools.partial(fn, *args, **kwargs))
        except KeyboardInterrupt:
            raise click.Abort() from None
        except BaseException as exc:  # noqa: BLE001 - mapped to messages below, else re-raised
            if isinstance(exc, (click.exceptions.Exit, click.Abort, SystemExit)):
                raise
            leaves = _leaf_errors(exc)
            for leaf in leaves:
                if isinstance(leaf, (click.ClickException, click.exceptions.Exit)):
                    raise leaf from None
                message = explain(leaf)
                if message is not None:
                    raise CommandError(message) from None
            raise

    return wrapper


class CommandError(click.ClickException):
    """An error message printed as-is (no "Error: " prefix: ours already say what they are)."""

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)
