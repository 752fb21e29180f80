from dataclasses import dataclass, field

import pydantic
import pytest

from cmo._converter import from_json, to_json


@dataclass
class Address:
    city: str


@dataclass
class Person:
    name: str
    address: Address
    tags: list[str] = field(default_factory=list)
    nickname: str | None = None


class Model(pydantic.BaseModel):
    name: str
    score: float = 0.0


def test_dataclass_round_trip_with_nesting():
    person = Person("ada", Address("london"), ["x"])
    data = to_json(person)
    assert data == {"name": "ada", "address": {"city": "london"}, "tags": ["x"], "nickname": None}
    assert from_json(data, Person) == person


def test_pydantic_round_trip():
    model = Model(name="m", score=1.5)
    assert from_json(to_json(model), Model) == model


def test_dict_and_none_pass_through():
    assert to_json({"a": (1, 2)}) == {"a": [1, 2]}
    assert from_json({"a": 1}, dict) == {"a": 1}
    assert from_json({"a": 1}, None) == {"a": 1}


def test_unknown_dataclass_field_is_an_error_naming_it():
    with pytest.raises(TypeError, match="bogus"):
        from_json({"city": "x", "bogus": 1}, Address)


def test_non_json_values_are_refused():
    with pytest.raises(TypeError, match="set"):
        to_json({"a": {1, 2}})
    with pytest.raises(TypeError, match="keys must be strings"):
        to_json({1: "a"})
