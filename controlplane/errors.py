"""API errors as Kubernetes ``Status`` objects.

Every failure the registry or the API server reports on purpose is an :class:`ApiError`; the API
server turns it into the HTTP status code and the ``Status`` body clients (kubectl, client-go,
the Python client) already know how to read: ``reason`` drives their retry/relist logic
(``Conflict`` -> re-read, ``Expired`` -> re-list), ``details.causes`` points at the field.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "forbidden",
    "internal_error",
    "invalid",
    "method_not_allowed",
    "not_acceptable",
    "not_found",
    "service_unavailable",
    "status_success",
    "too_large",
    "unauthorized",
    "unsupported_media_type",
]


class ApiError(Exception):
    """A failure with a Kubernetes ``Status``: ``code`` (HTTP), ``reason``, ``message``, ``details``."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
        *, metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        #: the Status' ListMeta (an expired list's ``continue`` token)
        self.metadata = metadata

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata or {}),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def _qualified(resource: str, group: str) -> str:
    # Kubernetes names a resource "deployments.apps" outside the core group.
    return f"{resource}.{group}" if group else resource


def _details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        _details(name, group, resource),
    )


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        _details(name, group, resource),
    )


def conflict(resource: str, name: str, why: str, group: str = "") -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        _details(name, group, resource),
    )


# The exact wording Kubernetes uses; clients and operators recognise it.
MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, name: str, causes: list[dict[str, Any]], group: str = "") -> ApiError:
    """422 Invalid: ``causes`` are ``{"reason", "message", "field"}`` dicts."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(name, group, kind)
    details["causes"] = causes
    return ApiError(422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", message)


def forbidden(resource: str, name: str, why: str, group: str = "") -> ApiError:
    target = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
    return ApiError(403, "Forbidden", f"{target} is forbidden: {why}", _details(name, group, resource))


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)


def expired(message: str, *, continue_token: str | None = None) -> ApiError:
    """410 Expired; ``continue_token``: the Status' ``metadata.continue`` that resumes an expired
    list's paging at the latest revision (Kubernetes' "inconsistent continue")."""
    return ApiError(410, "Expired", message, metadata={"continue": continue_token} if continue_token else None)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"the request body is larger than the limit of {limit} bytes")


def unsupported_media_type(content_type: str, allowed: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f'the body of the request was in an unknown format - accepted media types include: {", ".join(allowed)}'
        + (f" (got {content_type!r})" if content_type else ""),
    )


def internal_error(message: str = "an internal error occurred; see the server log") -> ApiError:
    return ApiError(500, "InternalError", message)


def service_unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def status_success(details: dict[str, Any] | None = None, code: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}
    if details:
        body["details"] = details
    return body
