"""Request size limits, enforced before a body is read into memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .. import errors

__all__ = ["MAX_BODY_BYTES", "ClientGone", "read_body"]

# Kubernetes' own limit for a request body (etcd's default value size is 1.5 MiB; 3 MiB leaves
# room for JSON overhead while keeping one request from exhausting a small master's memory).
MAX_BODY_BYTES = 3 * 1024 * 1024


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


async def read_body(
    receive: Callable[[], Awaitable[dict[str, Any]]], headers: dict[str, str], limit: int = MAX_BODY_BYTES
) -> bytes:
    """The request body; 413 as soon as it is known to exceed ``limit`` (Content-Length or while reading)."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise errors.bad_request("invalid Content-Length header") from None
        if size > limit:
            raise errors.too_large(limit)
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise errors.too_large(limit)
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
