import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmo.serialization import canonical_json, parse_json, state_hash

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_round_trips_and_is_stable(value):
    encoded = canonical_json(value)
    assert parse_json(encoded) == value
    assert canonical_json(parse_json(encoded)) == encoded


@given(st.dictionaries(st.text(), st.integers(), min_size=2, max_size=8))
def test_key_order_does_not_change_the_bytes(mapping):
    reversed_mapping = dict(reversed(list(mapping.items())))
    assert canonical_json(mapping) == canonical_json(reversed_mapping)
    assert state_hash(canonical_json(mapping)) == state_hash(canonical_json(reversed_mapping))


def test_canonical_form_is_compact_sorted_utf8():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_hash_is_sha256_hex_of_the_bytes():
    assert state_hash(b"{}") == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"x": float("-inf")}])
def test_nan_and_infinity_are_refused(bad):
    with pytest.raises(ValueError, match="Out of range float values"):
        canonical_json(bad)


@pytest.mark.parametrize("data", [b"NaN", b'{"a": Infinity}', b"{", b"\xff"])
def test_parse_refuses_what_is_not_json(data):
    with pytest.raises(ValueError, match=r"JSON|Expecting|decode"):
        parse_json(data)


def test_parse_accepts_plain_json():
    assert parse_json(json.dumps({"a": [1, 2]}).encode()) == {"a": [1, 2]}
