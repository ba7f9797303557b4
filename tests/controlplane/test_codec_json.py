"""Request bodies: parse_json reads integers of any size exactly (orjson would read one beyond
64 bits as a float, so such bodies go to the standard parser) while digits inside strings (the
zero-padded container ids a hollow node reports) keep the fast parser."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from controlplane import codec
from controlplane.codec import parse_json

_big = st.integers(min_value=-(10**40), max_value=10**40)
_digits = st.text(alphabet="0123456789abcdef:.", min_size=0, max_size=70)
_values = st.recursive(
    st.none() | st.booleans() | _big | _digits | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_digits, children, max_size=4),
    max_leaves=20,
)


@given(_values, st.sampled_from([None, 1]))
def test_parse_json_reads_every_value_exactly(value, indent):
    body = json.dumps(value, indent=indent).encode()
    parsed = parse_json(body)
    assert parsed == value
    assert json.dumps(parsed) == json.dumps(value)  # an int stays an int (1e19 != 10**19 as JSON)


@given(st.integers(min_value=10**18, max_value=10**30) | st.integers(min_value=-(10**30), max_value=-(10**18)),
       st.sampled_from(["{{\"a\":{}}}", "[{}]", "[1, {} ]", "{{\"a\": {}.5}}", "{{\"a\":{}e2}}", "{}"]))
def test_every_long_number_is_seen(number, shape):
    body = shape.format(number).encode()
    assert codec._may_hold_long_number(body)


def test_hollow_container_ids_keep_the_fast_parser():
    status = {"containerStatuses": [{"containerID": "hollow://" + format(7, "064x"),
                                     "imageID": "hollow://sha256:" + format(0x1234ABCD, "064x")}]}
    body = json.dumps(status).encode()
    assert not codec._may_hold_long_number(body)
    assert parse_json(body) == status
