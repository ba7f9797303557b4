"""Who is calling (bearer tokens) and what they may do.

Authentication and authorization are hooks so the security issue can add client certificates,
node credentials and finer rules without touching request handling.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Authenticator", "Authorizer", "StaticTokenAuthenticator", "User", "default_authorize"]


@dataclass(frozen=True)
class User:
    """An authenticated caller. ``role``: "admin", "viewer", "node" (more may come)."""

    name: str
    groups: tuple[str, ...] = field(default=())
    role: str = "admin"


class Authenticator(Protocol):
    """Bearer tokens; an implementation may also define
    ``authenticate_certificate(pem: str) -> User | None`` for TLS client certificates (the
    server passes the verified peer certificate when there is no bearer token)."""

    def authenticate(self, token: str) -> User | None:
        """The user a bearer token belongs to, or None (-> 401)."""


class Authorizer(Protocol):
    """True or False, or, for a PUT or PATCH of one object (not its scale), a callable
    ``admit(stored: dict | None) -> None`` that the registry runs on the stored object the
    write starts from (on each retry, the version that retry writes) and that raises a 403
    ApiError to refuse: a decision that depends on the stored object (a node may write only
    pods bound to it) made without a read of its own. Elsewhere a callable is refused (500)."""

    def __call__(
        self,
        user: User,
        verb: str,
        resource: str,
        namespace: str | None,
        name: str | None,
        subresource: str | None,
        obj: Any,
    ) -> Any: ...


class StaticTokenAuthenticator:
    """A fixed token -> User table (the admin token written by ``master init``)."""

    def __init__(self, tokens: Mapping[str, User]) -> None:
        self._tokens = dict(tokens)

    def authenticate(self, token: str) -> User | None:
        # Compare every entry in constant time: response timing must not reveal a token prefix.
        found = None
        for known, user in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found


_READ_VERBS = frozenset({"get", "list", "watch"})


def default_authorize(
    user: User,
    verb: str,
    resource: str,
    namespace: str | None,
    name: str | None,
    subresource: str | None,
    obj: Any,
) -> bool:
    """Admins may do everything, viewers may read.

    Node agents are allowed everything for now; the security issue narrows them to their own
    Node, Lease and pods.
    """
    if user.role in ("admin", "node"):
        return True
    if user.role == "viewer":
        return verb in _READ_VERBS
    return False
