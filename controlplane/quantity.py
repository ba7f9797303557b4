"""Kubernetes resource quantities ("500m", "0.5", "128Mi", "1G", "1e3") as exact fractions.

A quantity is a signed decimal number followed by a binary-SI suffix (Ki..Ei), a decimal-SI
suffix (n, u, m, "", k..E) or a decimal exponent (e3, E-2). Values are kept as `Fraction` so
"0.1" + "0.2" cpu is exactly "300m", which is what the scheduler's fit arithmetic needs.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["QuantityError", "parse_quantity", "format_quantity", "is_quantity"]


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


_BINARY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
# The grammar of apimachinery's resource.Quantity: number, then one suffix kind.
_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exp>[+-]?[0-9]+)|(?P<dec>[numkMGTPE]?))$"
)
# apimachinery refuses exponents this large too; it also keeps Fraction arithmetic cheap.
_MAX_EXPONENT = 64
# Quantities longer than this are not something a person wrote; refuse before regex work.
_MAX_LEN = 128


def parse_quantity(text: object) -> Fraction:
    """Parse a quantity string (or a JSON number) into an exact value.

    CPU comes out in cores ("500m" -> 1/2), memory in bytes ("128Mi" -> 134217728).
    Raises QuantityError with Kubernetes' wording for anything else.
    """
    if isinstance(text, bool):
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(str(text))
    if not isinstance(text, str) or len(text) > _MAX_LEN:
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    m = _QUANTITY_RE.match(text)
    if m is None or m.group("num") in ("+", "-", ".", "+.", "-."):
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    value = Fraction(m.group("num"))
    if m.group("bin"):
        return value * _BINARY[m.group("bin")]
    if m.group("exp") is not None:
        exp = int(m.group("exp"))
        if abs(exp) > _MAX_EXPONENT:
            raise QuantityError("quantity exponent is out of range")
        return value * Fraction(10) ** exp
    return value * _DECIMAL[m.group("dec") or ""]


def is_quantity(text: object) -> bool:
    try:
        parse_quantity(text)
    except QuantityError:
        return False
    return True


def format_quantity(value: Fraction | int, binary: bool = False) -> str:
    """Canonical text for a value: the largest suffix that keeps the number whole.

    Values finer than a nano-unit round up, as apimachinery does ("never report less than
    was asked for"). `binary=True` prefers Ki/Mi/... when the value is a whole multiple.
    """
    value = Fraction(value)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if binary and value.denominator == 1 and value >= 1024:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            mult = _BINARY[suffix]
            if value % mult == 0:
                return f"{sign}{value // mult}{suffix}"
    nanos = value * 10**9
    if nanos.denominator != 1:
        nanos = Fraction(-((-nanos.numerator) // nanos.denominator))  # ceiling
    n = int(nanos)
    if n == 0:
        return "0"
    for suffix, exp in (("E", 27), ("P", 24), ("T", 21), ("G", 18), ("M", 15), ("k", 12),
                        ("", 9), ("m", 6), ("u", 3), ("n", 0)):
        if n % 10**exp == 0:
            return f"{sign}{n // 10**exp}{suffix}"
    raise AssertionError("unreachable: n % 1 == 0")
