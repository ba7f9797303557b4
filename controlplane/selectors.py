"""Label and field selectors: the `?labelSelector=` / `?fieldSelector=` string syntax and the
API object form (`matchLabels` / `matchExpressions`) used by Deployments, ReplicaSets, Services
and affinity terms.

String grammar (apimachinery labels.Parse): comma-separated requirements, each one of
`key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`,
`key>N`, `key<N`. Field selectors allow only `=`, `==`, `!=` on a per-kind set of fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._kinds_syntax import (
    FieldError,
    as_dict,
    as_list,
    invalid,
    label_value,
    not_supported,
    qualified_name,
    required,
)

__all__ = [
    "SelectorError",
    "Requirement",
    "LabelSelector",
    "FieldSelector",
    "field_labels",
    "validate_label_selector",
]


class SelectorError(ValueError):
    """A selector that cannot be parsed or uses a field the kind does not index."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause: `key <op> values`. op is one of in, notin, exists, !, gt, lt
    (`=`/`==` parse to `in` with one value, `!=` to `notin`)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "in":
            return present and labels[self.key] in self.values
        if self.op == "notin":
            return not present or labels[self.key] not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("gt", "lt"):
            if not present:
                return False
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except ValueError:
                return False
            return have > want if self.op == "gt" else have < want
        raise AssertionError(f"unknown operator {self.op}")

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op == "in" and len(self.values) == 1:
            return f"{self.key}={self.values[0]}"
        if self.op == "notin" and len(self.values) == 1:
            return f"{self.key}!={self.values[0]}"
        if self.op == "gt":
            return f"{self.key}>{self.values[0]}"
        if self.op == "lt":
            return f"{self.key}<{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


class LabelSelector:
    """A conjunction of requirements. `LabelSelector.everything()` matches all objects,
    `LabelSelector.nothing()` none (what a missing API selector means)."""

    __slots__ = ("requirements", "_nothing")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False) -> None:
        self.requirements: tuple[Requirement, ...] = tuple(
            sorted(requirements, key=lambda r: (r.key, r.op, r.values))
        )
        self._nothing = nothing

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(nothing=True)

    @property
    def empty(self) -> bool:
        """True when it selects every object."""
        return not self.requirements and not self._nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "LabelSelector.nothing()" if self._nothing else f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LabelSelector) and self.requirements == other.requirements
                and self._nothing == other._nothing)

    def __hash__(self) -> int:
        return hash((self.requirements, self._nothing))

    # --- construction ------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the `?labelSelector=` syntax; raises SelectorError with the reason."""
        if not isinstance(text, str):
            raise SelectorError("label selector must be a string")
        return cls(_LabelParser(text).parse())

    @classmethod
    def from_api(cls, selector: Mapping | None) -> LabelSelector:
        """The metav1.LabelSelector object form. None selects nothing, {} everything."""
        if selector is None:
            return cls.nothing()
        errs = validate_label_selector(selector, "selector")
        if errs:
            raise SelectorError(str(errs[0]))
        reqs = [Requirement(k, "in", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
        for expr in selector.get("matchExpressions") or []:
            op = _API_OPS[expr["operator"]]
            reqs.append(Requirement(expr["key"], op, tuple(sorted(set(expr.get("values") or ())))))
        return cls(reqs)

    @classmethod
    def from_labels(cls, labels: Mapping[str, str] | None) -> LabelSelector:
        """A Service-style selector map (`spec.selector`): every pair must match."""
        return cls(Requirement(k, "in", (v,)) for k, v in (labels or {}).items())


_API_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def validate_label_selector(selector: object, path: str) -> list[FieldError]:
    """Field errors for a metav1.LabelSelector object (apimachinery ValidateLabelSelector)."""
    errs: list[FieldError] = []
    sel = as_dict(errs, path, selector)
    ml = as_dict(errs, f"{path}.matchLabels", sel.get("matchLabels"))
    for k, v in ml.items():
        for m in qualified_name(k):
            errs.append(invalid(f"{path}.matchLabels", k, m))
        if not isinstance(v, str):
            errs.append(invalid(f"{path}.matchLabels", v, "must be a string"))
            continue
        for m in label_value(v):
            errs.append(invalid(f"{path}.matchLabels", v, m))
    for i, expr in enumerate(as_list(errs, f"{path}.matchExpressions", sel.get("matchExpressions"))):
        p = f"{path}.matchExpressions[{i}]"
        expr = as_dict(errs, p, expr)
        op = expr.get("operator")
        values = as_list(errs, f"{p}.values", expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(FieldError(f"{p}.values", "FieldValueForbidden",
                                       "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(not_supported(f"{p}.operator", op, ("In", "NotIn", "Exists", "DoesNotExist")))
        key = expr.get("key")
        if not isinstance(key, str) or not key:
            errs.append(required(f"{p}.key"))
        else:
            for m in qualified_name(key):
                errs.append(invalid(f"{p}.key", key, m))
        for j, v in enumerate(values):
            if not isinstance(v, str):
                errs.append(invalid(f"{p}.values[{j}]", v, "must be a string"))
            else:
                for m in label_value(v):
                    errs.append(invalid(f"{p}.values[{j}]", v, m))
    return errs


class _LabelParser:
    """Hand-written tokenizer + parser for the label selector string syntax."""

    _TOKEN_RE = re.compile(r"\s*(==|!=|=|\(|\)|,|!|>|<|[^\s=!(),<>]+)")

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            m = self._TOKEN_RE.match(text, pos)
            if m is None:
                if text[pos:].strip() == "":
                    break
                raise SelectorError(f"unable to parse requirement: unexpected character at {pos}")
            self.tokens.append(m.group(1))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.i = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> str | None:
        tok = self._peek()
        self.i += 1
        return tok

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        if not self.tokens:
            return reqs
        while True:
            reqs.append(self._requirement())
            tok = self._next()
            if tok is None:
                return reqs
            if tok != ",":
                raise SelectorError(f"found '{tok}', expected: ',' or 'end of string'")

    def _key(self, tok: str | None) -> str:
        if tok is None or tok in ("==", "!=", "=", "(", ")", ",", "!", ">", "<"):
            raise SelectorError(f"found '{tok or 'end of string'}', expected: identifier")
        msgs = qualified_name(tok)
        if msgs:
            raise SelectorError(f'unable to parse requirement: key: Invalid value: "{tok}": {msgs[0]}')
        return tok

    def _value(self, tok: str) -> str:
        msgs = label_value(tok)
        if msgs:
            raise SelectorError(f'unable to parse requirement: values[0]: Invalid value: "{tok}": {msgs[0]}')
        return tok

    def _requirement(self) -> Requirement:
        tok = self._next()
        if tok == "!":
            return Requirement(self._key(self._next()), "!")
        key = self._key(tok)
        op = self._peek()
        if op is None or op == ",":
            return Requirement(key, "exists")
        self.i += 1
        if op in ("=", "==", "!="):
            nxt = self._peek()
            if nxt is None or nxt == ",":
                value = ""
            else:
                self.i += 1
                value = self._value(nxt)
            return Requirement(key, "notin" if op == "!=" else "in", (value,))
        if op in (">", "<"):
            nxt = self._next()
            if nxt is None or not re.fullmatch(r"-?[0-9]+", nxt):
                raise SelectorError(f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {nxt}")
            return Requirement(key, "gt" if op == ">" else "lt", (nxt,))
        if op in ("in", "notin"):
            if self._next() != "(":
                raise SelectorError("found end of string, expected: '('")
            values: list[str] = []
            expect_value = True
            while True:
                tok = self._next()
                if tok is None:
                    raise SelectorError("found 'end of string', expected: ')'")
                if tok == ")":
                    if expect_value and values:
                        values.append("")  # "(a,)": a trailing comma means an empty value
                    break
                if tok == ",":
                    if expect_value:
                        values.append("")
                    expect_value = True
                    continue
                if not expect_value:
                    raise SelectorError(f"found '{tok}', expected: ',' or ')'")
                values.append(self._value(tok))
                expect_value = False
            if not values:
                raise SelectorError(f"unable to parse requirement: for '{op}', 'notin' operators, values set can't be empty")
            return Requirement(key, op, tuple(sorted(set(values))))
        raise SelectorError(
            f"found '{op}', expected: in, notin, =, ==, !=, gt, lt"
        )


# --- field selectors ------------------------------------------------------------------------

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
# Fields each resource's storage can filter on, as in the Kubernetes registries' field label
# conversion functions (pkg/registry/*/strategy.go); anything else is refused.
_FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "pods": _COMMON_FIELDS + (
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
    ),
    "nodes": _COMMON_FIELDS + ("spec.unschedulable",),
    "namespaces": _COMMON_FIELDS + ("status.phase",),
    "events": _COMMON_FIELDS + (
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
        "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
        "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
    ),
    "replicasets": _COMMON_FIELDS + ("status.replicas",),
    "services": _COMMON_FIELDS + ("spec.clusterIP", "spec.type"),
}


def field_labels(plural: str) -> tuple[str, ...]:
    """Fields a `?fieldSelector=` may use for this resource."""
    return _FIELD_LABELS.get(plural, _COMMON_FIELDS)


def _field_value(obj: Mapping, path: str) -> str:
    if path == "source":  # events: `source` means source.component (Kubernetes' event fields)
        path = "source.component"
    cur: object = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


class FieldSelector:
    """`field=value,field!=value` over a kind's indexed fields."""

    __slots__ = ("terms",)

    def __init__(self, terms: Iterable[tuple[str, str, str]] = ()) -> None:
        #: (field, op, value) with op "=" or "!="
        self.terms: tuple[tuple[str, str, str], ...] = tuple(terms)

    @classmethod
    def parse(cls, text: str, rtype: object = None) -> FieldSelector:
        """Parse `?fieldSelector=`; rtype (a ResourceType or plural name) restricts the fields.

        Raises SelectorError('field label not supported: X') for fields the kind lacks."""
        if not isinstance(text, str):
            raise SelectorError("field selector must be a string")
        plural = rtype if isinstance(rtype, str) or rtype is None else getattr(rtype, "plural", None)
        allowed = field_labels(plural) if plural else None
        terms = []
        for part in _split_unescaped(text, ","):
            if not part.strip():
                continue
            term = _parse_field_term(part)
            if allowed is not None and term[0] not in allowed:
                raise SelectorError(f"field label not supported: {term[0]}")
            terms.append(term)
        return cls(terms)

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, obj: Mapping) -> bool:
        for field, op, value in self.terms:
            have = _field_value(obj, field)
            if (have == value) != (op == "="):
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value required by a `field=value` term, if any (for index lookups)."""
        for f, op, v in self.terms:
            if f == field and op == "=":
                return v
        return None

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{_escape(v)}" for f, op, v in self.terms)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(v: str) -> str:
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\":
            if i + 1 >= len(v) or v[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence in {v!r}")
            out.append(v[i + 1])
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


def _parse_field_term(part: str) -> tuple[str, str, str]:
    # Find the first unescaped operator.
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 2
            continue
        for op, norm in (("!=", "!="), ("==", "="), ("=", "=")):
            if part.startswith(op, i):
                field = part[:i].strip()
                if not field:
                    raise SelectorError(f"invalid field selector: '{part}'")
                return field, norm, _unescape(part[i + len(op):])
        i += 1
    raise SelectorError(f"invalid selector: '{part}'; can't understand '{part}'")
