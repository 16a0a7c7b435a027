"""Hostile OpenAPI documents: $ref fan-out, YAML aliases, too many operations — bounded, and others keep answering.

Before the caps, the 2.6 KB fan-out document below (depth 18) took 145 s of one core to import, doubling per
level, and the 700-byte alias document turned into gigabytes of stored JSON.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from foundation.errors import PayloadTooLarge, ValidationFailed
from foundation.schema.limits import MAX_IMPORT_OPERATIONS, ExpansionBudget
from toolserver.tools.openapi import import_document, tools_from_openapi

QUICK_S = 10.0  # generous: the attacks now answer in milliseconds, and took minutes to hours before


def fanout_document(depth: int, *, cyclic: bool = False) -> dict[str, Any]:
    """Each level refers twice to the next: 2**depth copies once inlined (cyclic: each also refers back)."""
    schemas: dict[str, Any] = {}
    for level in range(depth):
        following = {"$ref": f"#/components/schemas/s{level + 1}"}
        properties: dict[str, Any] = {"a": following, "b": following}
        if cyclic:
            properties["back"] = {"$ref": "#/components/schemas/s0"}
        schemas[f"s{level}"] = {"type": "object", "properties": properties}
    schemas[f"s{depth}"] = {"type": "string"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "fan-out", "version": "1"},
        "servers": [{"url": "https://api.example.com"}],
        "paths": {
            "/x": {
                "post": {
                    "operationId": "x",
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/s0"}}}
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
        "components": {"schemas": schemas},
    }


def number_fanout(levels: int, number: Any, count: int = 10) -> dict[str, Any]:
    """`count` copies of `number` in an enum, then `levels` levels of two $refs each to the level below."""
    document = fanout_document(0)
    schemas: dict[str, Any] = {"L0": {"enum": [number] * count}}
    for level in range(1, levels + 1):
        below = {"$ref": f"#/components/schemas/L{level - 1}"}
        schemas[f"L{level}"] = {"type": "object", "properties": {"a": below, "b": below}}
    document["components"]["schemas"] = schemas
    body = document["paths"]["/x"]["post"]["requestBody"]["content"]["application/json"]
    body["schema"] = {"$ref": f"#/components/schemas/L{levels}"}
    return document


def alias_yaml(levels: int = 9) -> str:
    """The "billion laughs": nine references to the level below, nine levels deep."""
    lines = [
        "openapi: 3.0.3",
        "info: {title: laughs, version: '1'}",
        "servers: [{url: 'https://api.example.com'}]",
        "paths:",
        "  /x:",
        "    get:",
        "      operationId: x",
        "      responses: {'200': {description: ok}}",
        "x-laughs:",
        "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    ]
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


async def _while_attacking(two_tenants: dict[str, httpx.AsyncClient], body: dict[str, Any]) -> httpx.Response:
    """Send the import as team-a; meanwhile team-b lists its tools and /healthz answers."""
    started = time.monotonic()
    attack = asyncio.create_task(two_tenants["a"].post("/v1/tools/import/openapi", json=body))
    others = await asyncio.gather(two_tenants["b"].get("/v1/tools"), two_tenants["b"].get("/healthz"))
    assert [r.status_code for r in others] == [200, 200]
    response = await attack
    assert time.monotonic() - started < QUICK_S
    error = response.json()["error"]
    assert error["field"] == "document" and error["type"] and error["message"]
    return response


async def test_fanout_json_document_is_refused_quickly_over_http(two_tenants):
    response = await _while_attacking(two_tenants, {"document": fanout_document(18)})
    assert response.status_code == 413
    assert "expand" in response.json()["error"]["message"]
    assert (await two_tenants["a"].get("/v1/tools")).json()["tools"] == (
        await two_tenants["b"].get("/v1/tools")
    ).json()["tools"]  # nothing of the refused import was stored


async def test_cyclic_fanout_cannot_use_the_memo_and_still_hits_the_cap(two_tenants):
    response = await _while_attacking(two_tenants, {"document": fanout_document(30, cyclic=True)})
    assert response.status_code == 413


async def test_yaml_aliases_are_refused_over_http(two_tenants):
    text = alias_yaml()
    assert len(text) < 1000
    response = await _while_attacking(two_tenants, {"document": text})
    assert response.status_code == 422
    assert "alias" in response.json()["error"]["message"]


def test_merge_keys_are_aliases_too() -> None:
    text = alias_yaml(1) + "x-base: &base {a: 1}\nx-derived:\n  <<: *base\n"
    with pytest.raises(ValidationFailed, match="alias"):
        import_document(text)


def test_anchors_without_aliases_and_plain_yaml_import() -> None:
    tools = import_document(alias_yaml(1).replace("&l0 ", "&unused "))
    assert [tool.name for tool in tools] == ["x"]


def test_shared_schemas_are_inlined_once_and_copied_into_each_tool() -> None:
    document = fanout_document(7)
    shared = {"requestBody": document["paths"]["/x"]["post"]["requestBody"]}
    document["paths"] = {
        f"/op{i}": {"post": {"operationId": f"op{i}", **shared, "responses": {}}} for i in range(200)
    }
    started = time.monotonic()
    tools = tools_from_openapi(document)
    assert time.monotonic() - started < QUICK_S
    assert len(tools) == 200
    first, second = tools[0].parameters, tools[1].parameters
    assert json.dumps(first) == json.dumps(second)
    first["properties"]["a"]["description"] = "edited"  # one tool's schema is not another's
    assert "description" not in second["properties"]["a"]


def test_too_many_operations_is_413() -> None:
    document = fanout_document(0)
    document["paths"] = {f"/p{i}": {"get": {"responses": {}}} for i in range(MAX_IMPORT_OPERATIONS + 1)}
    with pytest.raises(PayloadTooLarge, match="operations"):
        tools_from_openapi(document)


def test_one_operation_over_the_tool_cap_names_it() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        tools_from_openapi(fanout_document(14), budget=ExpansionBudget(max_bytes=64 * 1024 * 1024))
    assert "POST /x" in caught.value.message and caught.value.details["field"] == "document"


def test_the_deadline_stops_an_import() -> None:
    with pytest.raises(PayloadTooLarge, match="took over"):
        tools_from_openapi(fanout_document(8), budget=ExpansionBudget(deadline_s=0.0))


def test_deeply_nested_documents_are_422() -> None:
    text = "openapi: 3.0.3\nx: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises((ValidationFailed, PayloadTooLarge)):
        import_document(text)


async def test_huge_integers_are_refused_before_anything_is_dumped(two_tenants):
    # Before: this 45 KB document (4096 copies of ten 4299-digit integers, charged 5 bytes each) took 14 s and
    # 440 MB, and froze the event loop for 4 s in one json.dumps (which holds the GIL while it converts them).
    document = number_fanout(12, int("9" * 4299))
    assert len(json.dumps(document)) < 50_000
    response = await _while_attacking(two_tenants, {"document": document})
    assert response.status_code == 422
    assert "digits" in response.json()["error"]["message"]


async def test_a_fanout_of_numbers_is_charged_at_their_size(two_tenants):
    response = await _while_attacking(
        two_tenants, {"document": number_fanout(12, 10**19)}
    )  # 20 digits: allowed
    assert response.status_code == 413 and "expand" in response.json()["error"]["message"]


def test_the_charge_is_at_least_what_is_stored() -> None:
    # Before: a non-ASCII or control character was charged 1 byte and stored as up to 12 ("\ud83d\ude00").
    document = fanout_document(0)
    schema = {
        "type": "object",
        "description": "\U0001f600" * 500 + "\u0000" * 500 + "é" * 500,
        "properties": {
            "n": {"type": "integer", "maximum": 10**19, "minimum": -(10**19), "default": 12345678901234},
            "f": {"type": "number", "multipleOf": 0.000123456789, "enum": [1.5e300, True, None, False]},
            "s": {"type": "string", "examples": ['"\\\n' * 100], "default": "\u2028" * 100},
        },
    }
    document["paths"]["/x"]["post"]["requestBody"]["content"]["application/json"]["schema"] = schema
    budget = ExpansionBudget()
    (tool,) = tools_from_openapi(document, budget=budget)
    stored = len(json.dumps(tool.parameters, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    assert budget.used >= stored
