"""Catastrophic regexes and quadratic validation, performed against the real validators and the in-process app.

Before RE2 and the budgets: `^(a+)+$` against "a" * 40 + "!" ran about 30 hours (1.6 s at 24 characters,
doubling with each one), uniqueItems over 8000 objects 142 s (quadratic: 100k objects, hours), a 30-level
anyOf chain 2**30 evaluations, an SOP transition regex the same as the pattern on the environment's loop.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import httpx
import pytest

from agent_core.environment.messages import Message
from agent_core.environment.sop import SOPRouter
from agent_core.errors import InvalidToolSchema, MalformedCall
from agent_core.tools import ArgumentChecker, LocalToolExecutor, openai_tool_schema
from foundation.errors import PayloadTooLarge, ValidationFailed
from foundation.schema.bounded import ValidationBudget
from foundation.schema.limits import MAX_UNIQUE_ITEMS
from foundation.schema.validation import check_schema, validate_arguments

QUICK_S = 10.0  # generous; the attacks below answer in milliseconds (the budgeted one in about 2 s)
EVIL = "^(a+)+$"
EVIL_INPUT = "a" * 40 + "!"
SOURCE = "def f(x=None):\n    return x\n"


def tool(name: str, x_schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "python",
        "source": SOURCE,
        "parameters": {"type": "object", "properties": {"x": x_schema}, **extra},
    }


def anyof_chain(depth: int) -> dict[str, Any]:
    """Each level tries two branches that both fail at the bottom: 2**depth evaluations."""
    defs: dict[str, Any] = {
        f"a{i}": {"anyOf": [{"$ref": f"#/$defs/a{i + 1}"}, {"$ref": f"#/$defs/a{i + 1}"}]}
        for i in range(depth)
    }
    defs[f"a{depth}"] = {"type": "string"}
    return {"type": "object", "properties": {"x": {"$ref": "#/$defs/a0"}}, "$defs": defs}


async def _attack(two_tenants: dict[str, httpx.AsyncClient], name: str, arguments: Any) -> dict[str, Any]:
    """Call team-a's tool with hostile arguments; team-b's /healthz answers before the attack does."""
    started = time.monotonic()
    attack = asyncio.create_task(
        two_tenants["a"].post(f"/v1/tools/{name}/call", json={"arguments": arguments})
    )
    await asyncio.sleep(0.05)
    health = await two_tenants["b"].get("/healthz")
    assert health.status_code == 200
    response = await attack
    assert time.monotonic() - started < QUICK_S
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "validation_error" and error["message"]
    return error


async def test_catastrophic_pattern_is_matched_in_linear_time_over_http(two_tenants):
    registered = await two_tenants["a"].post(
        "/v1/tools", json=tool("evil", {"type": "string", "pattern": EVIL})
    )
    assert registered.status_code == 201, registered.text  # RE2 runs it, so it may be registered
    error = await _attack(two_tenants, "evil", {"x": EVIL_INPUT})
    assert error["field"] == "arguments.x" and "does not match" in error["message"]


async def test_catastrophic_pattern_properties_and_additional_properties(two_tenants):
    schema = tool("keys", {"type": "object", "patternProperties": {EVIL: {}}, "additionalProperties": False})
    assert (await two_tenants["a"].post("/v1/tools", json=schema)).status_code == 201
    error = await _attack(two_tenants, "keys", {"x": {EVIL_INPUT: 1}})
    assert error["field"] == f"arguments.x.{EVIL_INPUT}"


async def test_unique_items_over_a_large_array_is_refused_quickly(two_tenants):
    schema = tool("uniq", {"type": "array", "uniqueItems": True})
    assert (await two_tenants["a"].post("/v1/tools", json=schema)).status_code == 201
    error = await _attack(two_tenants, "uniq", {"x": list(range(100_000))})
    assert error["field"] == "arguments.x" and str(MAX_UNIQUE_ITEMS) in error["message"]


async def test_exponential_schema_stops_at_its_budget_while_others_answer(two_tenants, monkeypatch):
    """The check is held inside its first step until team-b has its answers: a loop blocked by it never answers."""
    entered, release = threading.Event(), threading.Event()
    step = ValidationBudget.step

    def held_step(self: ValidationBudget) -> None:
        if not entered.is_set():
            entered.set()
            release.wait(QUICK_S)
        step(self)

    monkeypatch.setattr(ValidationBudget, "step", held_step)
    body = {"name": "chain", "kind": "python", "source": SOURCE, "parameters": anyof_chain(30)}
    assert (await two_tenants["a"].post("/v1/tools", json=body)).status_code == 201
    attack = asyncio.create_task(two_tenants["a"].post("/v1/tools/chain/call", json={"arguments": {"x": 1}}))
    try:
        assert await asyncio.to_thread(entered.wait, QUICK_S)  # the check runs on a thread of its own ...
        health = await asyncio.wait_for(two_tenants["b"].get("/healthz"), QUICK_S)
        other = await asyncio.wait_for(two_tenants["b"].get("/v1/tools"), QUICK_S)
        assert health.status_code == 200 and other.status_code == 200
        assert not attack.done()  # ... and the loop answered others while it was still in its first step
    finally:
        release.set()
    started = time.monotonic()
    response = await attack
    assert time.monotonic() - started < QUICK_S
    assert response.status_code == 422 and response.json()["error"]["field"] == "arguments"


@pytest.mark.parametrize(
    ("pattern", "where"),
    [
        (r"(a)\1", "pattern"),  # backreference
        ("(?=a)b", "pattern"),  # lookahead
        ("(?<!a)b", "pattern"),  # lookbehind
        ("(?:a{1000}){1000}", "pattern"),  # a repetition RE2 refuses
        ("(?:.{0,100}){10}", "pattern"),  # over the program size cap
    ],
)
async def test_patterns_re2_cannot_run_are_refused_at_registration(two_tenants, pattern: str, where: str):
    response = await two_tenants["a"].post("/v1/tools", json=tool("bad", {"type": "string", where: pattern}))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "parameters.properties.x.pattern"
    keys = tool("bad", {"type": "object", "patternProperties": {pattern: {}}})
    response = await two_tenants["a"].post("/v1/tools", json=keys)
    assert response.json()["error"]["field"] == "parameters.properties.x.patternProperties"


async def test_unbounded_keywords_and_huge_schemas_are_refused_at_registration(two_tenants):
    for x_schema, field in (
        ({"type": "object", "unevaluatedProperties": False}, "parameters.properties.x.unevaluatedProperties"),
        ({"type": "array", "unevaluatedItems": False}, "parameters.properties.x.unevaluatedItems"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "parameters.properties.x.$schema"),
    ):
        response = await two_tenants["a"].post("/v1/tools", json=tool("bad", x_schema))
        assert response.status_code == 422 and response.json()["error"]["field"] == field
    huge = tool("big", {"type": "string", "description": "x" * 300_000})
    response = await two_tenants["a"].post("/v1/tools", json=huge)
    assert response.status_code == 413 and response.json()["error"]["field"] == "parameters"


def test_a_pattern_reached_only_through_a_ref_is_checked_too() -> None:
    schema = {
        "type": "object",
        "x-hidden": {"pattern": r"(a)\1"},
        "properties": {"x": {"$ref": "#/x-hidden"}},
    }
    with pytest.raises(ValidationFailed) as caught:
        check_schema(schema)
    assert caught.value.field == "parameters.x-hidden.pattern"


def test_regex_work_is_capped_per_call() -> None:
    schema = check_schema(
        {"type": "object", "properties": {"x": {"type": "string", "pattern": "a[ab]{500}c"}}}
    )
    started = time.monotonic()
    with pytest.raises(ValidationFailed, match="regex work cap") as caught:
        validate_arguments(schema, {"x": "ab" * 250_000})
    assert caught.value.field == "arguments" and time.monotonic() - started < QUICK_S


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),
        ([True, 1], True),
        ([False, 0, None], True),
        ([{"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}], False),
        ([[1, 2], [2, 1]], True),
        ([{"i": i} for i in range(MAX_UNIQUE_ITEMS)], True),
    ],
)
def test_unique_items_keeps_json_schema_equality(items: list[Any], unique: bool) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "array", "uniqueItems": True}}}
    started = time.monotonic()
    if unique:
        validate_arguments(schema, {"x": items})
    else:
        with pytest.raises(ValidationFailed, match="non-unique"):
            validate_arguments(schema, {"x": items})
    assert time.monotonic() - started < QUICK_S


def test_arguments_too_large_are_still_413() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(PayloadTooLarge):
        validate_arguments(schema, {"x": [{"i": i} for i in range(100_000)]})


# -- the agent core's argument checks (run on the run scheduler's event loop) ----------------------------


def test_agent_argument_checker_is_linear_and_bounded() -> None:
    parameters = {
        "type": "object",
        "properties": {"x": {"type": "string", "pattern": EVIL}, "y": {"type": "array", "uniqueItems": True}},
    }
    checker = ArgumentChecker([openai_tool_schema("evil", "", parameters)])
    started = time.monotonic()
    with pytest.raises(MalformedCall, match="does not match"):
        checker.check("evil", {"x": EVIL_INPUT})
    with pytest.raises(MalformedCall, match="uniqueItems"):
        checker.check("evil", {"y": list(range(MAX_UNIQUE_ITEMS + 1))})
    with pytest.raises(MalformedCall, match="cannot be checked"):
        ArgumentChecker([openai_tool_schema("chain", "", anyof_chain(30))]).check("chain", {"x": 1})
    with pytest.raises(MalformedCall, match="over the cap"):
        checker.check("evil", '{"x": "' + "a" * 2_000_000 + '"}')
    assert time.monotonic() - started < QUICK_S


def test_local_tools_with_patterns_re2_cannot_run_are_refused() -> None:
    parameters = {"type": "object", "properties": {"x": {"type": "string", "pattern": r"(a)\1"}}}
    with pytest.raises(InvalidToolSchema, match=r"parameters\.properties\.x\.pattern"):
        LocalToolExecutor().add(lambda x: x, parameters=parameters, name="bad")


# -- SOP transition regexes (matched on the environment center's event loop) --------------------------


def sop(regex: str) -> dict[str, Any]:
    return {
        "start": "draft",
        "states": {
            "draft": {
                "agent": "writer",
                "transitions": [{"when": {"regex": regex}, "to": "done"}, {"to": "draft"}],
            },
            "done": {"terminal": True},
        },
    }


def test_sop_regex_is_matched_in_linear_time() -> None:
    router = SOPRouter.from_spec(sop(EVIL))
    started = time.monotonic()
    assert router.route(Message(sender="writer", content=EVIL_INPUT), []) == ["writer"]
    assert router.state == "draft" and time.monotonic() - started < QUICK_S
    assert router.route(Message(sender="writer", content="a" * 40), []) == []
    assert router.state == "done"


@pytest.mark.parametrize("regex", [r"(\w+) \1", "(?=x)y", "(?<=x)y"])
def test_sop_regexes_re2_cannot_run_are_refused_naming_the_field(regex: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        SOPRouter.from_spec(sop(regex))
    assert caught.value.field == "router.states.draft.transitions[0].when.regex"


def test_sop_regex_work_is_capped_per_reply() -> None:
    spec = sop("a[ab]{500}c")
    spec["states"]["draft"]["transitions"] = [{"when": {"regex": "a[ab]{500}c"}, "to": "done"}] * 20
    router = SOPRouter.from_spec(spec)
    started = time.monotonic()
    assert router.route(Message(sender="writer", content="ab" * 100_000), []) == ["writer"]
    assert time.monotonic() - started < QUICK_S


async def test_sop_environment_with_a_catastrophic_regex_over_http(two_tenants):
    agents = [
        {"kind": "loop", "name": "writer", "role": "writer", "llm": {"scripted": [EVIL_INPUT, "a" * 40]}},
    ]
    bad = await two_tenants["a"].post(
        "/v1/environments", json={"name": "bad", "agents": agents, "router": {"kind": "sop", **sop(r"(a)\1")}}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "router.states.draft.transitions[0].when.regex"
    created = await two_tenants["a"].post(
        "/v1/environments", json={"name": "sop", "agents": agents, "router": {"kind": "sop", **sop(EVIL)}}
    )
    assert created.status_code == 201, created.text
    posted = await two_tenants["a"].post(
        "/v1/environments/sop/messages", json={"content": "write", "recipients": ["writer"]}
    )
    assert posted.status_code == 201
    started = time.monotonic()
    stepped = await two_tenants["a"].post("/v1/environments/sop/step", json={"steps": 4})
    assert stepped.status_code == 200 and time.monotonic() - started < QUICK_S
    described = (await two_tenants["a"].get("/v1/environments/sop")).json()
    assert [m["content"] for m in described["history"]][1:] == [EVIL_INPUT, "a" * 40]


async def test_format_regex_arguments_are_compiled_by_re2_never_by_re(two_tenants):
    # Before: jsonschema's `regex` format check ran re.compile on the argument: 1.25 s per distinct 1 MB
    # pattern, and `re` kept the last 512 of them (about 17.5 MB each).
    registered = await two_tenants["a"].post(
        "/v1/tools", json=tool("fmt", {"type": "string", "format": "regex"})
    )
    assert registered.status_code == 201, registered.text
    re.purge()
    for i in range(4):
        error = await _attack(two_tenants, "fmt", {"x": f"(x{i})" + "a" * 900_000})
        assert error["field"] == "arguments.x"
    assert not any(len(key[1]) > 4096 for key in list(re._cache))  # type: ignore[attr-defined]
    assert (
        await two_tenants["a"].post("/v1/tools/fmt/call", json={"arguments": {"x": "(a"}})
    ).status_code == 422
    assert (
        await two_tenants["a"].post("/v1/tools/fmt/call", json={"arguments": {"x": r"(a)\1"}})
    ).status_code == 422
    fine = await two_tenants["a"].post("/v1/tools/fmt/call", json={"arguments": {"x": "^[a-z]+$"}})
    assert fine.status_code == 200, fine.text


def test_other_format_checks_are_linear():
    # Measured: each under 0.3 s for a 1 MB string (the argument cap); the bound here is generous.
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    cases = {
        "date-time": "2020-01-01T00:00:00." + "1" * 500_000 + "!",
        "ipv6": "1:" * 250_000,
        "json-pointer": "/a~0" * 125_000,
        "relative-json-pointer": "0" + "/a" * 250_000,
        "idn-hostname": "a." * 250_000,
        "email": "a" * 500_000,
    }
    for fmt, value in cases.items():
        schema["properties"]["x"]["format"] = fmt  # type: ignore[index]
        started = time.monotonic()
        try:
            validate_arguments(schema, {"x": value})
        except ValidationFailed:
            pass
        assert time.monotonic() - started < QUICK_S, fmt


def test_cached_validators_are_bounded_by_schema_bytes():
    # Before: up to 1024 validators whatever their size (about 3.3 MB each for 256 KB schemas, 3.4 GB).
    from foundation.schema.validation import MAX_CACHED_SCHEMA_BYTES, _validator

    _validator.cache_clear()
    filler = "d" * (200 * 1024)
    count = MAX_CACHED_SCHEMA_BYTES // len(filler) + 10
    for i in range(count):
        schema = {"type": "object", "description": f"{i}{filler}", "properties": {"x": {"type": "integer"}}}
        validate_arguments(schema, {"x": i})
    info = _validator.cache_info()
    assert info.misses == count and 0 < info.schema_bytes <= MAX_CACHED_SCHEMA_BYTES
    assert info.schemas < count
    validate_arguments(schema, {"x": 1})
    assert _validator.cache_info().hits == 1  # the latest is still there
