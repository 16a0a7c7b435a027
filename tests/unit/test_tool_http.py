"""HttpToolRunner against a real HTTP server on 127.0.0.1 (Starlette served by uvicorn in a thread)."""

from __future__ import annotations

import asyncio
import pickle
import socket
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from foundation.errors import ValidationFailed
from toolserver.outbound.egress import EgressPolicy
from toolserver.tools import (
    CallContext,
    HttpToolConfig,
    HttpToolRunner,
    MissingSecret,
    ToolCallFailed,
    ToolSpec,
    ToolTimeout,
)


async def echo(request: Request) -> Response:
    body = await request.body()
    parsed: Any = None
    if request.headers.get("content-type", "").startswith("application/json"):
        parsed = await request.json()
    elif request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        parsed = dict(urllib.parse.parse_qsl(body.decode()))
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode(),
            "query": [list(pair) for pair in request.query_params.multi_items()],
            "headers": dict(request.headers),
            "body": body.decode(),
            "parsed": parsed,
        },
        headers={"x-request-id": "abc", "etag": '"v1"'},
    )


async def status(request: Request) -> Response:
    return PlainTextResponse("nope: " + "x" * 2000, status_code=int(request.path_params["code"]))


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "5")))
    return PlainTextResponse("done")


async def big(request: Request) -> Response:
    return Response(b"x" * int(request.query_params["n"]), media_type="application/octet-stream")


async def big_stream(request: Request) -> Response:
    n = int(request.query_params["n"])

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(n // 100):
            yield b"y" * 100

    return StreamingResponse(chunks(), media_type="text/plain")


async def text(request: Request) -> Response:
    return Response("héllo wörld".encode("latin-1"), media_type="text/plain; charset=latin-1")


async def bad_json(request: Request) -> Response:
    return Response(b"{not json", media_type="application/json")


async def redirect(request: Request) -> Response:
    return RedirectResponse("/echo/redirected", status_code=302)


APP = Starlette(
    routes=[
        Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
        Route("/status/{code:int}", status, methods=["GET", "POST"]),
        Route("/slow", slow),
        Route("/big", big),
        Route("/big-stream", big_stream),
        Route("/text", text),
        Route("/bad-json", bad_json),
        Route("/redirect", redirect),
    ]
)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(APP, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
async def runner() -> AsyncIterator[HttpToolRunner]:
    runner = HttpToolRunner(policy=LOOPBACK)
    yield runner
    await runner.aclose()


LOOPBACK = EgressPolicy.parse("127.0.0.1")  # the test server's address; the default policy refuses it
CONTEXT = CallContext(namespace="team-a", secrets={"WEATHER_KEY": "s3cret"})


def tool(**config: Any) -> ToolSpec:
    return ToolSpec(name="api", kind="http", config=config)


async def call(
    runner: HttpToolRunner, arguments: dict[str, Any], context: CallContext = CONTEXT, **config: Any
) -> Any:
    return await runner.run(tool(**config), arguments, context)


# --- mapping arguments ------------------------------------------------------------------------------------


async def test_get_sends_remaining_arguments_as_query(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(
        runner, {"q": "rain", "n": 3, "exact": True, "skip": None}, url=f"{base_url}/echo/search"
    )
    assert result["status"] == 200
    body = result["body"]
    assert body["method"] == "GET"
    assert body["path"] == "/echo/search"
    assert body["query"] == [["q", "rain"], ["n", "3"], ["exact", "true"]]
    assert body["body"] == ""
    assert result["headers"]["content-type"] == "application/json"
    assert result["headers"]["etag"] == '"v1"'
    assert "x-request-id" not in result["headers"]


async def test_list_query_values_repeat(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(runner, {"tag": ["a", "b"], "f": {"k": 1}}, url=f"{base_url}/echo/x")
    assert result["body"]["query"] == [["tag", "a"], ["tag", "b"], ["f", '{"k":1}']]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_body_methods_send_remaining_arguments_as_json(
    runner: HttpToolRunner, base_url: str, method: str
) -> None:
    result = await call(
        runner, {"city": "Paris", "days": [1, 2]}, url=f"{base_url}/echo/w", method=method.lower()
    )
    body = result["body"]
    assert body["method"] == method
    assert body["parsed"] == {"city": "Paris", "days": [1, 2]}
    assert body["query"] == []


@pytest.mark.parametrize("method", ["DELETE", "OPTIONS"])
async def test_other_methods_send_query(runner: HttpToolRunner, base_url: str, method: str) -> None:
    result = await call(runner, {"id": 7}, url=f"{base_url}/echo/items", method=method)
    assert result["body"]["method"] == method
    assert result["body"]["query"] == [["id", "7"]]


async def test_path_query_header_and_body_placement(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(
        runner,
        {"user": "ann", "item": 42, "verbose": False, "trace": "t-1", "name": "box", "size": 3, "unused": 1},
        url=f"{base_url}/echo/users/{{user}}/items/{{item}}",
        method="POST",
        query=["verbose"],
        body=["name", "size"],
        header_args=["trace"],
        aliases={"trace": "X-Trace-Id", "size": "item_size"},
    )
    body = result["body"]
    assert body["path"] == "/echo/users/ann/items/42"
    assert body["query"] == [["verbose", "false"]]
    # Arguments no list names go to the method's default place: the body for POST.
    assert body["parsed"] == {"name": "box", "item_size": 3, "unused": 1}
    assert body["headers"]["x-trace-id"] == "t-1"


async def test_query_remaining_with_explicit_body(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(
        runner,
        {"a": 1, "b": 2, "c": 3},
        url=f"{base_url}/echo/x",
        method="POST",
        query="remaining",
        body=["c"],
    )
    assert result["body"]["query"] == [["a", "1"], ["b", "2"]]
    assert result["body"]["parsed"] == {"c": 3}


async def test_body_arg_sends_one_value_as_the_body(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(
        runner,
        {"items": [1, 2, 3], "dry": True},
        url=f"{base_url}/echo/bulk",
        method="POST",
        body_arg="items",
        query=["dry"],
    )
    assert result["body"]["parsed"] == [1, 2, 3]
    assert result["body"]["query"] == [["dry", "true"]]


async def test_form_encoding(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(
        runner,
        {"user": "ann", "remember": True},
        url=f"{base_url}/echo/login",
        method="POST",
        body_encoding="form",
    )
    assert result["body"]["parsed"] == {"user": "ann", "remember": "true"}


async def test_path_parameters_cannot_traverse(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(runner, {"name": "../../admin?x=1#f"}, url=f"{base_url}/echo/files/{{name}}")
    assert result["body"]["raw_path"] == "/echo/files/..%2F..%2Fadmin%3Fx%3D1%23f"
    assert result["body"]["query"] == []
    for bad in ("..", ".", ""):
        with pytest.raises(ValidationFailed) as info:
            await call(runner, {"name": bad}, url=f"{base_url}/echo/files/{{name}}")
        assert info.value.field == "arguments.name"


async def test_missing_path_argument(runner: HttpToolRunner, base_url: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        await call(runner, {}, url=f"{base_url}/echo/{{id}}")
    assert info.value.field == "arguments.id"


# --- headers and secrets ----------------------------------------------------------------------------------


async def test_static_and_secret_headers(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(
        runner,
        {},
        url=f"{base_url}/echo/h",
        headers={"Accept": "application/json", "X-Client": "toolserver-test"},
        secret_headers={"X-Api-Key": "WEATHER_KEY"},
    )
    headers = result["body"]["headers"]
    assert headers["x-api-key"] == "s3cret"
    assert headers["x-client"] == "toolserver-test"


async def test_missing_secret_is_a_clear_error(runner: HttpToolRunner, base_url: str) -> None:
    with pytest.raises(MissingSecret) as info:
        await call(
            runner,
            {},
            CallContext(namespace="team-b"),
            url=f"{base_url}/echo/h",
            secret_headers={"Authorization": "API_TOKEN"},
        )
    assert info.value.secret == "API_TOKEN"
    assert "API_TOKEN" in info.value.message and "Authorization" in info.value.message
    assert "s3cret" not in str(info.value.to_dict())
    assert pickle.loads(pickle.dumps(info.value)).secret == "API_TOKEN"


# --- responses --------------------------------------------------------------------------------------------


async def test_text_bodies_are_decoded_with_their_charset(runner: HttpToolRunner, base_url: str) -> None:
    result = await call(runner, {}, url=f"{base_url}/text")
    assert result["body"] == "héllo wörld"


async def test_invalid_json_comes_back_as_text(runner: HttpToolRunner, base_url: str) -> None:
    assert (await call(runner, {}, url=f"{base_url}/bad-json"))["body"] == "{not json"


@pytest.mark.parametrize("code", [400, 404, 500, 503])
async def test_non_2xx_raises_with_status_and_excerpt(
    runner: HttpToolRunner, base_url: str, code: int
) -> None:
    with pytest.raises(ToolCallFailed) as info:
        await call(runner, {"q": "secret-query"}, url=f"{base_url}/status/{code}")
    error = info.value
    assert error.status_code == code
    assert error.error_type == "http_status"
    assert f"answered {code}" in error.message
    assert error.details["body_excerpt"].startswith("nope: xxx")
    assert len(error.details["body_excerpt"]) == 500
    assert "secret-query" not in error.message
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.status_code, copy.message) == (ToolCallFailed, code, error.message)


async def test_redirects_are_not_followed_unless_asked(runner: HttpToolRunner, base_url: str) -> None:
    with pytest.raises(ToolCallFailed) as info:
        await call(runner, {}, url=f"{base_url}/redirect")
    assert info.value.status_code == 302
    result = await call(runner, {}, url=f"{base_url}/redirect", follow_redirects=True)
    assert result["body"]["path"] == "/echo/redirected"


async def test_timeout(runner: HttpToolRunner, base_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(ToolTimeout) as info:
        await call(runner, {"s": 5}, url=f"{base_url}/slow", timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert info.value.timeout_s == 0.3
    assert info.value.error_type == "timeout"
    assert isinstance(info.value, ToolCallFailed)
    assert pickle.loads(pickle.dumps(info.value)).to_dict() == info.value.to_dict()
    assert (await call(runner, {"s": 0}, url=f"{base_url}/slow", timeout_s=5))["body"] == "done"


@pytest.mark.parametrize("path", ["big", "big-stream"])
async def test_response_cap(runner: HttpToolRunner, base_url: str, path: str) -> None:
    with pytest.raises(ToolCallFailed) as info:
        await call(runner, {"n": 5000}, url=f"{base_url}/{path}", max_response_bytes=1000)
    assert "max_response_bytes=1000" in info.value.message
    assert info.value.error_type == "response_too_large"
    result = await call(runner, {"n": 1000}, url=f"{base_url}/{path}", max_response_bytes=1000)
    assert len(result["body"]) == 1000


async def test_default_response_cap_is_one_mebibyte(runner: HttpToolRunner, base_url: str) -> None:
    with pytest.raises(ToolCallFailed):
        await call(runner, {"n": 1024 * 1024 + 1}, url=f"{base_url}/big")
    assert len((await call(runner, {"n": 1024 * 1024}, url=f"{base_url}/big"))["body"]) == 1024 * 1024


async def test_connection_refused_is_a_tool_failure(runner: HttpToolRunner) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(ToolCallFailed) as info:
        await call(runner, {}, url=f"http://127.0.0.1:{closed_port}/x", timeout_s=5)
    assert info.value.error_type == "connection_error"


async def test_a_given_client_is_used_and_left_open(base_url: str) -> None:
    import httpx

    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async with httpx.AsyncClient(
        headers={"X-From-Client": "yes"}, event_hooks={"request": [record]}
    ) as client:
        runner = HttpToolRunner(client)
        result = await call(runner, {}, url=f"{base_url}/echo/c")
        await runner.aclose()
        assert not client.is_closed
        assert sent == ["/echo/c"]
        # Requests are built by the tool config, not by the client, so client defaults do not leak in.
        assert "x-from-client" not in result["body"]["headers"]


# --- config -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "fragment"),
    [
        ({}, "config.url", "needs a url"),
        ({"url": "file:///etc/passwd"}, "config.url", "only http and https"),
        ({"url": "ftp://127.0.0.1/x"}, "config.url", "only http and https"),
        ({"url": "127.0.0.1:8000/x"}, "config.url", "only http and https"),
        ({"url": "http:///path"}, "config.url", "fixed host"),
        ({"url": "http://{host}/path"}, "config.url", "fixed host"),
        ({"url": "http://127.0.0.1/a/{b"}, "config.url", "unbalanced"),
        ({"url": "http://127.0.0.1/", "method": "TRACE"}, "config.method", "method must be one of"),
        ({"url": "http://127.0.0.1/", "query": "remaining", "body": "remaining"}, "config.body", "only one"),
        ({"url": "http://127.0.0.1/", "query": "a"}, "config.query", "list of names"),
        ({"url": "http://127.0.0.1/", "body": ["a"], "body_arg": "b"}, "config.body_arg", "excludes body"),
        ({"url": "http://127.0.0.1/", "headers": {"a": 1}}, "config.headers", "map names to strings"),
        ({"url": "http://127.0.0.1/", "timeout_s": 0}, "config.timeout_s", "positive"),
        ({"url": "http://127.0.0.1/", "max_response_bytes": "big"}, "config.max_response_bytes", "positive"),
        ({"url": "http://127.0.0.1/", "body_encoding": "xml"}, "config.body_encoding", "json, form"),
        ({"url": "http://127.0.0.1/", "remaining": "path"}, "config.remaining", "query, body"),
        (
            {"url": "http://127.0.0.1/", "body": "remaining", "body_arg": "b"},
            "config.body_arg",
            "excludes body",
        ),
        ({"url": "http://127.0.0.1/{a}", "path": ["b"]}, "config.path", "the url takes ['a']"),
        ({"url": "http://127.0.0.1/", "colour": "red"}, "config.colour", "unknown"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        HttpToolConfig.from_dict(config)
    assert info.value.field == field
    assert fragment in info.value.message


def test_config_defaults() -> None:
    get = HttpToolConfig.from_dict({"url": "https://api.example.com/v1/{id}/x/{id}/{other}"})
    assert (get.method, get.query, get.body, get.remaining) == ("GET", (), (), "query")
    assert (get.timeout_s, get.max_response_bytes, get.follow_redirects) == (30.0, 1024 * 1024, False)
    assert get.path == ("id", "other")
    post = HttpToolConfig.from_dict({"url": "https://api.example.com/", "method": "post", "path": []})
    assert (post.method, post.remaining) == ("POST", "body")
    with_body_arg = HttpToolConfig.from_dict(
        {"url": "https://api.example.com/", "method": "PUT", "body_arg": "b"}
    )
    assert with_body_arg.remaining == "query"
    explicit = HttpToolConfig.from_dict(
        {"url": "https://api.example.com/", "method": "PUT", "query": "remaining"}
    )
    assert (explicit.query, explicit.remaining) == ((), "query")


@pytest.mark.parametrize(("method", "where"), [("GET", "query"), ("POST", "body")])
async def test_unlisted_arguments_are_never_dropped(
    runner: HttpToolRunner, base_url: str, method: str, where: str
) -> None:
    # The shape the HTTP API registers: explicit (possibly empty) lists, body unset.
    result = await call(
        runner, {"a": 1, "b": 2}, url=f"{base_url}/echo/x", method=method, query=["a"], body=None, headers={}
    )
    assert result["body"]["query"][0] == ["a", "1"]
    if where == "query":
        assert result["body"]["query"] == [["a", "1"], ["b", "2"]]
    else:
        assert result["body"]["parsed"] == {"b": 2}


async def test_bad_scheme_is_refused_before_any_traffic(runner: HttpToolRunner) -> None:
    with pytest.raises(ValidationFailed):
        await call(runner, {}, url="file:///etc/passwd")
