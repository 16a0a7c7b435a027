"""check_schema at registration, validate_arguments at call time."""

from __future__ import annotations

from typing import Any

import pytest

from foundation.errors import PayloadTooLarge, ValidationFailed
from toolserver.tools import check_schema, derive_schema, validate_arguments

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "unit": {"enum": ["c", "f"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "where": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
            "additionalProperties": False,
        },
        "when": {"type": "string", "format": "date"},
    },
    "required": ["city"],
    "additionalProperties": False,
}


def failure(arguments: Any, schema: dict[str, Any] = SCHEMA) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        validate_arguments(schema, arguments)
    return info.value


def test_valid_arguments_come_back_as_a_new_dict() -> None:
    arguments = {"city": "Paris", "days": 3, "tags": ["a"], "where": {"lat": 1.0, "lon": 2}}
    result = validate_arguments(SCHEMA, arguments)
    assert result == arguments
    assert result is not arguments


@pytest.mark.parametrize(
    ("arguments", "field", "fragment"),
    [
        ({}, "arguments.city", "'city' is a required property"),
        ({"city": 3}, "arguments.city", "is not of type 'string'"),
        ({"city": ""}, "arguments.city", "should be non-empty"),
        ({"city": "x", "days": 0}, "arguments.days", "less than the minimum"),
        ({"city": "x", "days": "3"}, "arguments.days", "is not of type 'integer'"),
        ({"city": "x", "days": True}, "arguments.days", "is not of type 'integer'"),
        ({"city": "x", "unit": "k"}, "arguments.unit", "is not one of"),
        ({"city": "x", "tags": ["a", 2]}, "arguments.tags.1", "is not of type 'string'"),
        ({"city": "x", "where": {"lat": 1}}, "arguments.where.lon", "'lon' is a required property"),
        ({"city": "x", "where": {"lat": 1, "lon": "e"}}, "arguments.where.lon", "is not of type 'number'"),
        (
            {"city": "x", "where": {"lat": 1, "lon": 2, "alt": 3}},
            "arguments.where.alt",
            "'alt' was unexpected",
        ),
        ({"city": "x", "extra": 1}, "arguments.extra", "'extra' was unexpected"),
        ({"city": "x", "when": "not a date"}, "arguments.when", "is not a 'date'"),
    ],
)
def test_the_failing_field_is_named(arguments: dict[str, Any], field: str, fragment: str) -> None:
    error = failure(arguments)
    assert error.field == field
    assert fragment in error.message
    assert error.message.startswith(field + ": ")
    assert error.status == 422
    assert error.to_dict()["field"] == field


@pytest.mark.parametrize("bad", [[], "x", None, 3])
def test_arguments_must_be_an_object(bad: Any) -> None:
    assert failure(bad).field == "arguments"


def test_non_json_arguments_are_refused() -> None:
    assert failure({"city": float("nan")}).field == "arguments"
    assert failure({"city": object()}).field == "arguments"


def test_oversized_arguments_are_refused_before_validation() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        validate_arguments(SCHEMA, {"city": "x" * 2000}, max_bytes=1000)
    assert info.value.status == 413
    assert "over the cap of 1000" in info.value.message
    validate_arguments(SCHEMA, {"city": "x" * 900}, max_bytes=1000)


def test_default_cap_is_one_mebibyte() -> None:
    with pytest.raises(PayloadTooLarge):
        validate_arguments(SCHEMA, {"city": "x" * (1024 * 1024)})


def test_long_failing_values_do_not_make_long_messages() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    error = failure({"n": "y" * 100_000}, schema)
    assert len(error.message) < 400
    assert error.message.endswith("...")


def test_nested_refs_are_followed() -> None:
    schema = {
        "type": "object",
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
        "properties": {"points": {"type": "array", "items": {"$ref": "#/$defs/point"}}},
    }
    check_schema(schema)
    validate_arguments(schema, {"points": [{"x": 1}]})
    assert failure({"points": [{"x": 1}, {}]}, schema).field == "arguments.points.1.x"


def test_validators_are_cached_per_schema() -> None:
    from foundation.schema.validation import _validator

    _validator.cache_clear()
    for _ in range(5):
        validate_arguments(SCHEMA, {"city": "x"})
    validate_arguments({**SCHEMA, "required": []}, {})
    info = _validator.cache_info()
    assert (info.misses, info.hits) == (2, 4)


def test_derived_schemas_validate_calls() -> None:
    derived = derive_schema("def f(a: int, b: list[str] | None = None, *, c: bool = False):\n    pass\n")
    validate_arguments(derived.parameters, {"a": 1, "b": None})
    validate_arguments(derived.parameters, {"a": 1, "b": ["x"], "c": True})
    assert failure({"a": 1, "d": 2}, derived.parameters).field == "arguments.d"
    assert failure({"b": []}, derived.parameters).field == "arguments.a"


# --- check_schema -----------------------------------------------------------------------------------------


def test_good_schemas_pass_unchanged() -> None:
    assert check_schema(SCHEMA) is SCHEMA
    check_schema({"type": "object"})


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ("not a schema", "must be a JSON Schema object"),
        ({"properties": {}}, '"type": "object"'),
        ({"type": "string"}, '"type": "object"'),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "at properties/a/type"),
        ({"type": "object", "required": "a"}, "not a valid JSON Schema"),
        ({"type": "object", "properties": {"a": {"minimum": "1"}}}, "not a valid JSON Schema"),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}},
            "only use local $refs",
        ),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "does not resolve"),
    ],
)
def test_bad_schemas_are_refused_naming_parameters(schema: Any, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        check_schema(schema)
    assert info.value.field == "parameters"
    assert fragment in info.value.message


def test_refs_inside_data_keywords_are_not_schema_refs() -> None:
    check_schema({"type": "object", "properties": {"a": {"const": {"$ref": "elsewhere"}}}})


def test_a_property_named_ref_is_fine() -> None:
    schema = {"type": "object", "properties": {"$ref": {"type": "string"}}}
    check_schema(schema)
    validate_arguments(schema, {"$ref": "x"})
