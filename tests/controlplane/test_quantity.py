"""Quantities as Kubernetes parses them (apimachinery resource.Quantity)."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.quantity import QuantityError, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("0.5", Fraction(1, 2)),
        ("1", Fraction(1)),
        ("2.5", Fraction(5, 2)),
        ("128Mi", 128 * 1024**2),
        ("1Gi", 1024**3),
        ("1G", 10**9),
        ("1k", 1000),
        ("1e3", 1000),
        ("1E3", 1000),
        ("1.5e-3", Fraction(3, 2000)),
        ("100n", Fraction(1, 10**7)),
        ("10u", Fraction(1, 10**5)),
        ("-1", -1),
        ("+2", 2),
        (".5", Fraction(1, 2)),
        ("5.", 5),
        ("1E", 10**18),
        (3, 3),
        (0.25, Fraction(1, 4)),
    ],
)
def test_parse(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "abc", "1.2.3", "1Ki2", "1 Mi", "Mi", "1KB", "1e", "--1", "1mi", ".", "1e999", True, None, [1]]
)
def test_reject_garbage(text):
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("value", "binary", "text"),
    [
        (Fraction(1, 2), False, "500m"),
        (Fraction(2), False, "2"),
        (Fraction(1500), False, "1500"),
        (Fraction(3000), False, "3k"),
        (128 * 1024**2, True, "128Mi"),
        (1000, True, "1k"),
        (0, False, "0"),
        (Fraction(1, 3 * 10**9), False, "1n"),  # rounds up, never down
        (-2000, False, "-2k"),
    ],
)
def test_format(value, binary, text):
    assert format_quantity(value, binary=binary) == text


_suffix = st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "e3", "e-2", "n", "u"])


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999), _suffix,
       st.booleans())
def test_format_then_parse_round_trips(whole, frac, suffix, binary):
    text = f"{whole}.{frac:03d}{suffix}"
    value = parse_quantity(text)
    formatted = format_quantity(value, binary=binary)
    # Formatting is exact down to nano-units; anything finer rounds up by < 1n.
    assert 0 <= parse_quantity(formatted) - value < Fraction(1, 10**9)
