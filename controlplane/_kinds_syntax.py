"""Field errors and the syntax checks every kind shares (names, labels, ports, IPs).

Messages reproduce apimachinery's wording so an operator reading `kubectl apply` output sees
what they would see against Kubernetes, e.g.
`metadata.name: Invalid value: "My_Pod": a lowercase RFC 1123 subdomain must consist of ...`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeGuard

# Field error types: the `reason` of a StatusCause (apimachinery field.ErrorType strings).
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
NOT_FOUND = "FieldValueNotFound"
TYPE_INVALID = "FieldValueTypeInvalid"


def render_value(value: object) -> str:
    """Render a value the way apimachinery's field errors do (strings quoted, numbers bare)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: `spec.containers[0].ports[0].containerPort` etc.

    `detail` is the explanation alone ("must be between 1 and 65535, inclusive"); `message`
    is what Kubernetes puts in a StatusCause ('Invalid value: 0: must be between ...')."""

    field: str
    type: str
    detail: str = ""
    value: object = None

    @property
    def message(self) -> str:
        """The StatusCause message: the full text after the field path."""
        return self.body()

    def body(self) -> str:
        """The text after the field path, e.g. 'Invalid value: "x": must be ...'."""
        detail = self.detail
        if self.type == REQUIRED:
            head = "Required value"
        elif self.type == INVALID:
            head = f"Invalid value: {render_value(self.value)}"
        elif self.type == NOT_SUPPORTED:
            head = f"Unsupported value: {render_value(self.value)}"
        elif self.type == DUPLICATE:
            head = f"Duplicate value: {render_value(self.value)}"
        elif self.type == FORBIDDEN:
            head = "Forbidden"
        elif self.type == TOO_LONG:
            head = "Too long"
        elif self.type == TOO_MANY:
            head = "Too many"
        elif self.type == NOT_FOUND:
            head = f"Not found: {render_value(self.value)}"
        elif self.type == TYPE_INVALID:
            head = f"Invalid value: {render_value(self.value)}"
        else:
            head = self.type
        return f"{head}: {detail}" if detail else head

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict:
        """A metav1.StatusCause for this error."""
        return {"reason": self.type, "message": self.body(), "field": self.field}


def invalid_message(kind: str, name: str, errors: Iterable[FieldError]) -> str:
    """The Status message apiserver writes for a 422: `Pod "x" is invalid: a: ..., b: ...`."""
    errs = [str(e) for e in errors]
    body = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
    return f'{kind} "{name}" is invalid: {body}'


def required(path: str, msg: str = "") -> FieldError:
    return FieldError(path, REQUIRED, msg)


def invalid(path: str, value: object, msg: str) -> FieldError:
    return FieldError(path, INVALID, msg, value)


def not_supported(path: str, value: object, allowed: Iterable[str]) -> FieldError:
    values = ", ".join(json.dumps(a) for a in allowed)
    return FieldError(path, NOT_SUPPORTED, f"supported values: {values}", value)


def forbidden(path: str, msg: str) -> FieldError:
    return FieldError(path, FORBIDDEN, msg)


def duplicate(path: str, value: object) -> FieldError:
    return FieldError(path, DUPLICATE, "", value)


def type_error(path: str, value: object, expected: str) -> FieldError:
    return FieldError(path, TYPE_INVALID, f"must be {expected}", value)


# --- names -------------------------------------------------------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
# RFC 1123: a label is at most 63 octets, a full name at most 253.
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_DNS1123_LABEL_FMT}')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    f"for validation is '{_DNS1123_SUBDOMAIN_FMT}')"
)
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_RE = re.compile(f"^{_DNS1035_LABEL_FMT}$")
DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    f"'abc-123', regex used for validation is '{_DNS1035_LABEL_FMT}')"
)


def _max_len_msg(n: int) -> str:
    return f"must be no more than {n} characters"


def dns1123_label(value: str) -> list[str]:
    """Problems with `value` as an RFC 1123 label (empty list: fine)."""
    msgs = []
    if len(value) > DNS1123_LABEL_MAX:
        msgs.append(_max_len_msg(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.match(value):
        msgs.append(DNS1123_LABEL_MSG)
    return msgs


def dns1123_subdomain(value: str) -> list[str]:
    msgs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        msgs.append(_max_len_msg(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        msgs.append(DNS1123_SUBDOMAIN_MSG)
    return msgs


def dns1035_label(value: str) -> list[str]:
    msgs = []
    if len(value) > DNS1123_LABEL_MAX:
        msgs.append(_max_len_msg(DNS1123_LABEL_MAX))
    if not _DNS1035_LABEL_RE.match(value):
        msgs.append(DNS1035_LABEL_MSG)
    return msgs


_QNAME_CHAR_FMT = "[A-Za-z0-9]"
_QNAME_EXT_FMT = "[-A-Za-z0-9_.]"
_QUALIFIED_NAME_FMT = f"({_QNAME_CHAR_FMT}{_QNAME_EXT_FMT}*)?{_QNAME_CHAR_FMT}"
_QUALIFIED_NAME_RE = re.compile(f"^{_QUALIFIED_NAME_FMT}$")
# Label names and values are capped at 63 characters (apimachinery validation).
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    f"validation is '{_QUALIFIED_NAME_FMT}')"
)
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE_FMT}')"
)


def qualified_name(value: str) -> list[str]:
    """Problems with `value` as `[prefix/]name` (label and annotation keys, finalizers)."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        msgs = ["prefix part " + m for m in dns1123_subdomain(prefix)]
        if msgs:
            return msgs + _qualified_name_part(name)
    else:
        return [
            "a qualified name " + _QUALIFIED_NAME_MSG
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    return _qualified_name_part(name)


def _qualified_name_part(name: str) -> list[str]:
    if not name:
        return ["name part must be non-empty"]
    msgs = []
    if len(name) > QUALIFIED_NAME_MAX:
        msgs.append("name part " + _max_len_msg(QUALIFIED_NAME_MAX))
    if not _QUALIFIED_NAME_RE.match(name):
        msgs.append("name part " + _QUALIFIED_NAME_MSG)
    return msgs


def label_value(value: str) -> list[str]:
    msgs = []
    if len(value) > LABEL_VALUE_MAX:
        msgs.append(_max_len_msg(LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.match(value):
        msgs.append(_LABEL_VALUE_MSG)
    return msgs


_IANA_SVC_NAME_MAX = 15  # RFC 6335 service names are at most 15 characters.
_IANA_LETTER_RE = re.compile("[a-z]")
_IANA_RE = re.compile("^[-a-z0-9]+$")


def iana_svc_name(value: str) -> list[str]:
    """Problems with `value` as a named port (RFC 6335)."""
    msgs = []
    if len(value) > _IANA_SVC_NAME_MAX:
        msgs.append(_max_len_msg(_IANA_SVC_NAME_MAX))
    if not _IANA_RE.match(value):
        msgs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        msgs.append("must not contain consecutive hyphens")
    if not _IANA_LETTER_RE.search(value):
        msgs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        msgs.append("must not begin or end with a hyphen")
    return msgs


_ENV_VAR_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
ENV_VAR_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', "
    "or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or "
    "'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
)


def env_var_name(value: str) -> list[str]:
    return [] if _ENV_VAR_RE.match(value) else [ENV_VAR_MSG]


_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


def config_map_key(value: str) -> list[str]:
    msgs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        msgs.append(_max_len_msg(DNS1123_SUBDOMAIN_MAX))
    if not _CONFIG_KEY_RE.match(value):
        msgs.append(CONFIG_KEY_MSG)
    if value in (".", ".."):
        msgs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        msgs.append("must not start with '..'")
    return msgs


def is_ip(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def is_cidr(value: object) -> bool:
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


# --- generic field checks that append to an error list ---------------------------------------

PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def check_port(errs: list[FieldError], path: str, value: object, *, allow_zero: bool = False) -> None:
    if not is_int(value):
        errs.append(type_error(path, value, "an integer"))
        return
    if allow_zero and value == 0:
        return
    if not 1 <= value <= 65535:
        errs.append(invalid(path, value, PORT_RANGE_MSG))


def check_port_or_name(errs: list[FieldError], path: str, value: object) -> None:
    """An IntOrString port: a number 1-65535 or an IANA service name."""
    if isinstance(value, str):
        if value.isdigit():
            errs.append(invalid(path, value, PORT_RANGE_MSG))
            return
        for m in iana_svc_name(value):
            errs.append(invalid(path, value, m))
        return
    check_port(errs, path, value)


def check_non_negative(errs: list[FieldError], path: str, value: object) -> None:
    if value is None:
        return
    if not is_int(value):
        errs.append(type_error(path, value, "an integer"))
    elif value < 0:
        errs.append(invalid(path, value, "must be greater than or equal to 0"))


def check_positive(errs: list[FieldError], path: str, value: object) -> None:
    if value is None:
        return
    if not is_int(value):
        errs.append(type_error(path, value, "an integer"))
    elif value <= 0:
        errs.append(invalid(path, value, "must be greater than 0"))


def check_enum(errs: list[FieldError], path: str, value: object, allowed: tuple[str, ...],
               *, optional: bool = True) -> None:
    if value is None or (optional and value == ""):
        if not optional:
            errs.append(required(path))
        return
    if value not in allowed:
        errs.append(not_supported(path, value, allowed))


def check_labels(errs: list[FieldError], path: str, labels: object) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        errs.append(type_error(path, labels, "an object of string values"))
        return
    for k, v in labels.items():
        for m in qualified_name(k):
            errs.append(invalid(path, k, m))
        if not isinstance(v, str):
            errs.append(type_error(f"{path}.{k}", v, "a string"))
            continue
        for m in label_value(v):
            errs.append(invalid(path, v, m))


def check_name(errs: list[FieldError], path: str, value: object, fn: Callable[[str], list[str]]) -> None:
    if not isinstance(value, str):
        errs.append(type_error(path, value, "a string"))
        return
    for m in fn(value):
        errs.append(invalid(path, value, m))


def as_dict(errs: list[FieldError], path: str, value: object) -> dict:
    """`value` if it is an object; otherwise record a type error and return {}."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    errs.append(type_error(path, value, "an object"))
    return {}


def as_list(errs: list[FieldError], path: str, value: object) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    errs.append(type_error(path, value, "a list"))
    return []
