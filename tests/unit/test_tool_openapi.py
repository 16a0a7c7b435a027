"""tools_from_openapi: operations to http tools, checked against HttpToolRunner on a loopback server."""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from foundation.errors import ValidationFailed
from toolserver.outbound.egress import EgressPolicy
from toolserver.tools import (
    CallContext,
    HttpToolConfig,
    HttpToolRunner,
    ToolSpec,
    check_schema,
    tools_from_openapi,
    validate_arguments,
)

PET = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "name": {"type": "string", "description": "The pet's name", "example": "Rex"},
        "tag": {"type": "string", "nullable": True},
        "owner": {"$ref": "#/components/schemas/Person"},
    },
}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "friends": {"type": "array", "items": {"$ref": "#/components/schemas/Person"}},
    },
}


def petstore(version: str = "3.0.3") -> dict[str, Any]:
    return copy.deepcopy(
        {
            "openapi": version,
            "info": {"title": "Pets", "version": "1"},
            "servers": [
                {
                    "url": "https://{host}/api/{v}",
                    "variables": {"host": {"default": "pets.example.com"}, "v": {"default": "v3"}},
                }
            ],
            "paths": {
                "/pets": {
                    "get": {
                        "operationId": "listPets",
                        "summary": "List all pets",
                        "description": "Pages through every pet.",
                        "parameters": [
                            {
                                "name": "limit",
                                "in": "query",
                                "description": "Page size",
                                "schema": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": 100,
                                    "exclusiveMaximum": True,
                                },
                            },
                            {"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}},
                            {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                        ],
                    },
                    "post": {
                        "operationId": "createPet",
                        "summary": "Create a pet",
                        "requestBody": {"$ref": "#/components/requestBodies/PetBody"},
                    },
                },
                "/pets/{petId}": {
                    "parameters": [{"$ref": "#/components/parameters/PetId"}],
                    "get": {"operationId": "show pet by id!", "description": "Info for a pet"},
                    "put": {
                        "requestBody": {
                            "required": True,
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                        },
                    },
                    "delete": {"deprecated": True, "operationId": "deletePet"},
                },
                "/pets/{petId}/photo": {
                    "post": {
                        "operationId": "uploadPhoto",
                        "requestBody": {
                            "required": True,
                            "content": {"multipart/form-data": {"schema": {"type": "object"}}},
                        },
                    }
                },
                "/pets/bulk": {
                    "post": {
                        "operationId": "bulkCreate",
                        "requestBody": {
                            "content": {
                                "application/json": {
                                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}
                                }
                            }
                        },
                    }
                },
                "/login": {
                    "post": {
                        "operationId": "login",
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/x-www-form-urlencoded": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"user": {"type": "string"}},
                                        "required": ["user"],
                                    }
                                }
                            },
                        },
                    }
                },
            },
            "components": {
                "schemas": {"Pet": PET, "Person": PERSON},
                "parameters": {
                    "PetId": {
                        "name": "petId",
                        "in": "path",
                        "required": True,
                        "description": "The pet's id",
                        "schema": {"type": "integer"},
                    }
                },
                "requestBodies": {
                    "PetBody": {
                        "required": True,
                        "content": {
                            "application/json; charset=utf-8": {
                                "schema": {"$ref": "#/components/schemas/Pet"}
                            }
                        },
                    }
                },
            },
        }
    )


def by_name(tools: list[ToolSpec]) -> dict[str, ToolSpec]:
    return {t.name: t for t in tools}


def test_one_http_tool_per_supported_operation() -> None:
    tools = tools_from_openapi(petstore())
    assert [t.name for t in tools] == [
        "listPets",
        "createPet",
        "show_pet_by_id",
        "put_pets_petId",
        "deletePet",
        "bulkCreate",
        "login",
    ]  # uploadPhoto needs multipart, which is not supported
    for tool in tools:
        assert tool.kind == "http"
        check_schema(tool.parameters)
        HttpToolConfig.from_dict(tool.config)


def test_query_header_and_cookie_parameters() -> None:
    tool = by_name(tools_from_openapi(petstore()))["listPets"]
    assert tool.description == "List all pets\n\nPages through every pet."
    assert tool.parameters["properties"] == {
        # OpenAPI 3.0's boolean exclusiveMaximum becomes the 2020-12 number form.
        "limit": {"type": "integer", "minimum": 1, "exclusiveMaximum": 100, "description": "Page size"},
        "X-Request-Id": {"type": "string"},
    }
    assert tool.parameters["required"] == []
    assert tool.config == {
        "url": "https://pets.example.com/api/v3/pets",
        "method": "GET",
        "query": ["limit"],
        "header_args": ["X-Request-Id"],
    }


def test_json_body_properties_become_arguments() -> None:
    tool = by_name(tools_from_openapi(petstore()))["createPet"]
    properties = tool.parameters["properties"]
    assert list(properties) == ["name", "tag", "owner"]  # readOnly "id" is not an input
    assert properties["name"] == {"type": "string", "description": "The pet's name", "examples": ["Rex"]}
    assert properties["tag"] == {"type": ["string", "null"]}  # 3.0 nullable
    # The recursive Person schema is inlined once, then left unconstrained.
    assert properties["owner"]["properties"]["friends"] == {"type": "array", "items": {}}
    assert tool.parameters["required"] == ["name"]
    assert tool.config["body"] == ["name", "tag", "owner"]
    assert tool.config["body_encoding"] == "json"
    assert tool.config["method"] == "POST"


def test_path_parameters_from_the_path_item_and_fallback_names() -> None:
    tools = by_name(tools_from_openapi(petstore()))
    show = tools["show_pet_by_id"]
    assert show.description == "Info for a pet"
    assert show.parameters["properties"] == {"petId": {"type": "integer", "description": "The pet's id"}}
    assert show.parameters["required"] == ["petId"]
    assert show.config["url"] == "https://pets.example.com/api/v3/pets/{petId}"
    put = tools["put_pets_petId"]
    assert put.description == "PUT /pets/{petId}"
    assert put.parameters["required"] == ["petId", "name"]
    assert tools["deletePet"].description.startswith("(deprecated)")


def test_non_object_body_is_one_argument() -> None:
    tool = by_name(tools_from_openapi(petstore()))["bulkCreate"]
    assert list(tool.parameters["properties"]) == ["body"]
    assert tool.parameters["properties"]["body"]["type"] == "array"
    assert tool.parameters["required"] == []  # the request body is optional
    assert tool.config["body_arg"] == "body"


def test_form_body() -> None:
    tool = by_name(tools_from_openapi(petstore()))["login"]
    assert tool.config["body_encoding"] == "form"
    assert tool.config["body"] == ["user"]
    assert tool.parameters["required"] == ["user"]


def test_openapi_3_1_schemas_pass_through() -> None:
    document = petstore("3.1.0")
    document["components"]["schemas"]["Pet"]["properties"]["tag"] = {"type": ["string", "null"]}
    limit = document["paths"]["/pets"]["get"]["parameters"][0]["schema"]
    limit.update(exclusiveMaximum=100, maximum=None)
    del limit["maximum"]
    tools = by_name(tools_from_openapi(document))
    assert tools["createPet"].parameters["properties"]["tag"] == {"type": ["string", "null"]}
    assert tools["listPets"].parameters["properties"]["limit"]["exclusiveMaximum"] == 100


def test_3_0_keywords_in_a_3_1_document_are_named() -> None:
    with pytest.raises(ValidationFailed, match=r"operation GET /pets: .*exclusiveMaximum"):
        tools_from_openapi(petstore("3.1.0"))


def test_prefix_namespace_and_sanitised_unique_names() -> None:
    document = petstore()
    document["paths"]["/other"] = {"get": {"operationId": "listPets"}, "post": {"operationId": "9lives"}}
    tools = tools_from_openapi(document, prefix="pets_", namespace="team-a")
    names = [t.name for t in tools]
    assert names[0] == "pets_listPets"
    assert "pets_listPets_2" in names
    assert "pets_9lives" in names
    assert all(t.namespace == "team-a" for t in tools)
    unprefixed = [t.name for t in tools_from_openapi(document)]
    assert "op_9lives" in unprefixed


def test_long_operation_ids_fit_the_name_rule() -> None:
    document = {"openapi": "3.0.0", "servers": [{"url": "http://127.0.0.1"}], "paths": {}}
    document["paths"] = {f"/p{i}": {"get": {"operationId": "x" * 100}} for i in range(3)}
    names = [t.name for t in tools_from_openapi(document)]
    assert names == ["x" * 64, "x" * 62 + "_2", "x" * 62 + "_3"]


def test_colliding_and_unusual_argument_names_get_aliases() -> None:
    document = {
        "openapi": "3.0.0",
        "servers": [{"url": "http://127.0.0.1"}],
        "paths": {
            "/items/{id}": {
                "patch": {
                    "operationId": "patchItem",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "filter[name]", "in": "query", "schema": {"type": "string"}},
                    ],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"id": {"type": "string"}}}
                            }
                        }
                    },
                }
            }
        },
    }
    tool = tools_from_openapi(document)[0]
    assert list(tool.parameters["properties"]) == ["id", "filter_name", "id_2"]
    assert tool.config["aliases"] == {"filter_name": "filter[name]", "id_2": "id"}
    assert tool.config["body"] == ["id_2"]


@pytest.mark.parametrize(
    ("servers", "base_url", "expected"),
    [
        ([{"url": "https://api.example.com/v1/"}], None, "https://api.example.com/v1/pets"),
        ([{"url": "https://api.example.com/v1"}], "http://127.0.0.1:9000", "http://127.0.0.1:9000/pets"),
        ([{"url": "/api/v3"}], "https://petstore.example.com/", "https://petstore.example.com/api/v3/pets"),
        ([], "http://127.0.0.1:9000/base", "http://127.0.0.1:9000/base/pets"),
        (None, "http://127.0.0.1:9000", "http://127.0.0.1:9000/pets"),
    ],
)
def test_server_url(servers: Any, base_url: str | None, expected: str) -> None:
    document = {"openapi": "3.1.0", "paths": {"/pets": {"get": {"operationId": "list"}}}}
    if servers is not None:
        document["servers"] = servers
    assert tools_from_openapi(document, base_url=base_url)[0].config["url"] == expected


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.pop("openapi"), "openapi (missing)"),
        (lambda d: d.update(openapi="2.0"), "not openapi 2.0"),
        (lambda d: (d.pop("openapi"), d.update(swagger="2.0")), "not swagger 2.0"),
        (lambda d: d.update(openapi="3.2.0"), "only OpenAPI 3.0 and 3.1"),
        (lambda d: d.update(paths={}), "no paths"),
        (lambda d: d.pop("paths"), "no paths"),
        (lambda d: d.pop("servers"), "no servers; pass base_url"),
        (lambda d: d.update(servers=[{"url": "/api"}]), "relative; pass base_url"),
        (lambda d: d.update(servers=[{"url": "https://{region}.example.com"}]), "variable without a default"),
        (lambda d: d.update(servers=[{"url": "ftp://example.com"}]), "not http or https"),
        (
            lambda d: d["paths"]["/pets"]["get"].update(
                parameters=[{"$ref": "#/components/parameters/Nope"}]
            ),
            "'#/components/parameters/Nope' does not resolve",
        ),
        (
            lambda d: d["paths"]["/pets"]["get"].update(parameters=[{"$ref": "other.yaml#/P"}]),
            "points outside the document",
        ),
        (
            lambda d: d["components"]["schemas"].update(
                Person={"type": "object", "properties": {"a": {"type": "strin"}}}
            ),
            "operation POST /pets",
        ),
    ],
)
def test_errors_name_what_is_wrong(change: Any, fragment: str) -> None:
    document = petstore()
    change(document)
    with pytest.raises(ValidationFailed) as info:
        tools_from_openapi(document)
    assert info.value.field == "document"
    assert fragment in info.value.message


def test_not_a_dict() -> None:
    with pytest.raises(ValidationFailed):
        tools_from_openapi([])  # type: ignore[arg-type]


def test_self_referencing_parameter_ref_is_an_error() -> None:
    document = petstore()
    document["components"]["parameters"]["Loop"] = {"$ref": "#/components/parameters/Loop"}
    document["paths"]["/pets"]["get"]["parameters"] = [{"$ref": "#/components/parameters/Loop"}]
    with pytest.raises(ValidationFailed, match="refers to itself"):
        tools_from_openapi(document)


# --- end to end against a loopback server -----------------------------------------------------------------


async def pet(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "request_id": request.headers.get("x-request-id"),
            "json": (await request.json()) if body else None,
        }
    )


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/api/{rest:path}", pet, methods=["GET", "POST", "PUT", "DELETE"])]),
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


async def test_imported_tools_call_the_api(base_url: str) -> None:
    tools = by_name(tools_from_openapi(petstore(), base_url=base_url + "/api"))
    runner = HttpToolRunner(policy=EgressPolicy.parse("127.0.0.1"))
    context = CallContext(namespace="team-a")
    try:
        listed = await runner.run(
            tools["listPets"],
            validate_arguments(tools["listPets"].parameters, {"limit": 5, "X-Request-Id": "r-1"}),
            context,
        )
        assert listed["body"] == {
            "method": "GET",
            "path": "/api/pets",
            "query": {"limit": "5"},
            "request_id": "r-1",
            "json": None,
        }

        arguments = {"petId": 7, "name": "Rex", "tag": None}
        updated = await runner.run(
            tools["put_pets_petId"],
            validate_arguments(tools["put_pets_petId"].parameters, arguments),
            context,
        )
        assert updated["body"]["method"] == "PUT"
        assert updated["body"]["path"] == "/api/pets/7"
        assert updated["body"]["json"] == {"name": "Rex", "tag": None}

        bulk = await runner.run(tools["bulkCreate"], {"body": [{"name": "a"}, {"name": "b"}]}, context)
        assert bulk["body"]["json"] == [{"name": "a"}, {"name": "b"}]
    finally:
        await runner.aclose()


def test_imported_schemas_validate_calls() -> None:
    tool = by_name(tools_from_openapi(petstore()))["listPets"]
    with pytest.raises(ValidationFailed) as info:
        validate_arguments(tool.parameters, {"limit": 100})
    assert info.value.field == "arguments.limit"
