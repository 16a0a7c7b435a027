"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1 (uvicorn in a thread).

The server picks a scripted behaviour from the request's `model` name and counts hits per model.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agent_core import (
    AgentLoop,
    LLMConfigError,
    LLMError,
    LocalToolExecutor,
    LoopSettings,
    OpenAICompatibleClient,
    ToolCall,
    Usage,
)


class _Scripted:
    """Shared between the server thread and the tests."""

    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []


def _completion(
    message: dict[str, Any], finish: str = "stop", usage: tuple[int, int] = (12, 3)
) -> JSONResponse:
    return JSONResponse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        }
    )


def _sse(chunks: list[dict[str, Any] | str]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        yield ": keep-alive comment\n\n"
        for chunk in chunks:
            data = chunk if isinstance(chunk, str) else json.dumps(chunk)
            yield f"data: {data}\n\n"
            await asyncio.sleep(0)
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


def _delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


_USAGE_CHUNK = {
    "object": "chat.completion.chunk",
    "choices": [],
    "usage": {"prompt_tokens": 20, "completion_tokens": 7},
}
_PARALLEL = [
    {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
    {"id": "call_b", "type": "function", "function": {"name": "mul", "arguments": '{"a": 3, "b": 4}'}},
]


def _make_app(state: _Scripted) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        state.hits[model] += 1
        state.requests.append(body)
        state.headers.append(dict(request.headers))
        hit = state.hits[model]
        if model == "plain":
            return _completion({"content": "Hello there"})
        if model == "parallel":
            return _completion({"content": None, "tool_calls": _PARALLEL}, "tool_calls", (30, 15))
        if model == "stream-content":
            role = _delta({"role": "assistant", "content": ""})
            parts = [_delta({"content": "Hel"}), _delta({"content": "lo"})]
            return _sse([role, *parts, _delta({}, "stop"), _USAGE_CHUNK])
        if model == "stream-tools" or (model == "stream-429" and hit > 1):
            first = {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "add", "arguments": ""},
            }
            second = {
                "index": 1,
                "id": "call_b",
                "type": "function",
                "function": {"name": "mul", "arguments": '{"a"'},
            }
            return _sse(
                [
                    _delta({"role": "assistant", "content": None, "tool_calls": [first]}),
                    _delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1,'}}]}),
                    _delta({"tool_calls": [second]}),
                    _delta({"tool_calls": [{"index": 0, "function": {"arguments": ' "b": 2}'}}]}),
                    _delta({"tool_calls": [{"index": 1, "function": {"arguments": ": 3, "}}]}),
                    _delta({"tool_calls": [{"index": 1, "function": {"arguments": '"b": 4}'}}]}),
                    _delta({}, "tool_calls"),
                    _USAGE_CHUNK,
                ]
            )
        if model in ("rate-limited", "stream-429") and hit == 1:
            return JSONResponse({"error": {"message": "slow down"}}, 429, headers={"Retry-After": "1"})
        if model == "rate-limited-long" and hit == 1:
            return JSONResponse({"error": {"message": "slow down"}}, 429, headers={"Retry-After": "120"})
        if model == "flaky" and hit <= 2:
            return JSONResponse({"error": {"message": "overloaded"}}, 503)
        if model == "always-503":
            return JSONResponse({"error": {"message": "down for maintenance"}}, 503)
        if model == "bad-request":
            return JSONResponse({"error": {"message": "model 'bad-request' does not exist"}}, 400)
        if model == "slow" and hit == 1:
            await asyncio.sleep(1.5)
        if model == "agent":
            last = body["messages"][-1]
            if last["role"] == "tool":
                return _completion({"content": f"the sum is {last['content']}"})
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
            }
            return _completion({"content": None, "tool_calls": [call]}, "tool_calls")
        return _completion({"content": f"ok after {hit}"})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, _Scripted]]:
    state = _Scripted()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _make_app(state), log_level="error", lifespan="off", loop="asyncio", http="h11", access_log=False
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/v1", state
    uv.should_exit = True
    thread.join(10)
    sock.close()


def _client(base_url: str, model: str, **options: Any) -> OpenAICompatibleClient:
    options.setdefault("backoff_base_s", 0.01)
    return OpenAICompatibleClient(base_url, model, api_key="sk-test", **options)


MESSAGES = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]


async def test_plain_content_usage_and_request_shape(server: tuple[str, _Scripted]) -> None:
    url, state = server
    async with _client(url, "plain", extra_body={"temperature": 0.1}) as client:
        turn = await client.complete(MESSAGES, TOOLS)
    assert (turn.content, turn.tool_calls, turn.finish_reason) == ("Hello there", (), "stop")
    assert turn.usage == Usage(12, 3)
    sent = state.requests[-1]
    assert sent == {"model": "plain", "messages": MESSAGES, "tools": TOOLS, "temperature": 0.1}
    assert state.headers[-1]["authorization"] == "Bearer sk-test"


async def test_parallel_tool_calls(server: tuple[str, _Scripted]) -> None:
    url, _ = server
    async with _client(url, "parallel") as client:
        turn = await client.complete(MESSAGES, TOOLS)
    assert turn.content is None
    assert turn.tool_calls == (
        ToolCall("call_a", "add", '{"a": 1, "b": 2}'),
        ToolCall("call_b", "mul", '{"a": 3, "b": 4}'),
    )
    assert turn.finish_reason == "tool_calls"
    assert turn.usage == Usage(30, 15)


async def test_streaming_content(server: tuple[str, _Scripted]) -> None:
    url, state = server
    async with _client(url, "stream-content", stream=True) as client:
        turn = await client.complete(MESSAGES)
    assert (turn.content, turn.tool_calls, turn.finish_reason) == ("Hello", (), "stop")
    assert turn.usage == Usage(20, 7)
    assert state.requests[-1]["stream"] is True
    assert state.requests[-1]["stream_options"] == {"include_usage": True}


async def test_streaming_tool_call_deltas_assembled_by_index(server: tuple[str, _Scripted]) -> None:
    url, _ = server
    async with _client(url, "stream-tools", stream=True) as client:
        turn = await client.complete(MESSAGES, TOOLS)
    assert turn.content is None
    assert turn.tool_calls == (
        ToolCall("call_a", "add", '{"a": 1, "b": 2}'),
        ToolCall("call_b", "mul", '{"a": 3, "b": 4}'),
    )
    assert [json.loads(c.arguments) for c in turn.tool_calls] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert (turn.finish_reason, turn.usage) == ("tool_calls", Usage(20, 7))


async def test_429_honours_retry_after(server: tuple[str, _Scripted]) -> None:
    url, state = server
    started = time.monotonic()
    async with _client(url, "rate-limited") as client:
        turn = await client.complete(MESSAGES)
    elapsed = time.monotonic() - started
    assert turn.content == "ok after 2"
    assert state.hits["rate-limited"] == 2
    assert 0.9 <= elapsed < 5, elapsed  # backoff alone would be ~0.01 s


async def test_retry_after_is_capped(server: tuple[str, _Scripted]) -> None:
    url, _ = server
    started = time.monotonic()
    async with _client(url, "rate-limited-long", max_retry_after_s=0.2) as client:
        turn = await client.complete(MESSAGES)
    assert turn.content == "ok after 2"
    assert time.monotonic() - started < 2


async def test_streaming_request_is_retried_too(server: tuple[str, _Scripted]) -> None:
    url, state = server
    async with _client(url, "stream-429", stream=True, max_retry_after_s=0.05) as client:
        turn = await client.complete(MESSAGES)
    assert [c.name for c in turn.tool_calls] == ["add", "mul"]
    assert state.hits["stream-429"] == 2


async def test_503_twice_then_success(server: tuple[str, _Scripted]) -> None:
    url, state = server
    async with _client(url, "flaky") as client:
        turn = await client.complete(MESSAGES)
    assert turn.content == "ok after 3"
    assert state.hits["flaky"] == 3


async def test_retries_run_out_with_a_retryable_error(server: tuple[str, _Scripted]) -> None:
    url, state = server
    async with _client(url, "always-503", max_retries=2) as client:
        with pytest.raises(LLMError, match=r"after 3 attempts.*down for maintenance") as caught:
            await client.complete(MESSAGES)
    assert (caught.value.status_code, caught.value.retryable) == (503, True)
    assert state.hits["always-503"] == 3


async def test_400_is_not_retried(server: tuple[str, _Scripted]) -> None:
    url, state = server
    async with _client(url, "bad-request") as client:
        with pytest.raises(LLMError, match=r"HTTP 400 .*does not exist") as caught:
            await client.complete(MESSAGES)
    assert (caught.value.status_code, caught.value.retryable) == (400, False)
    assert caught.value.to_dict()["type"] == "llm_error"
    assert state.hits["bad-request"] == 1


async def test_timeout_is_retried(server: tuple[str, _Scripted]) -> None:
    url, state = server
    started = time.monotonic()
    async with _client(url, "slow", timeout_s=0.3) as client:
        turn = await client.complete(MESSAGES)
    assert turn.content == "ok after 2"
    assert state.hits["slow"] == 2
    assert time.monotonic() - started < 1.4  # did not wait for the slow answer


async def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    async with _client(f"http://127.0.0.1:{port}/v1", "plain", max_retries=1) as client:
        with pytest.raises(LLMError, match="after 2 attempts: ConnectError") as caught:
            await client.complete(MESSAGES)
    assert caught.value.retryable is True
    assert caught.value.status_code is None


async def test_environment_fallbacks(server: tuple[str, _Scripted], monkeypatch: pytest.MonkeyPatch) -> None:
    url, state = server
    monkeypatch.setenv("OPENAI_BASE_URL", url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    async with OpenAICompatibleClient(model="plain") as client:
        assert client.url == f"{url}/chat/completions"
        await client.complete(MESSAGES)
    assert state.headers[-1]["authorization"] == "Bearer sk-from-env"
    with pytest.raises(LLMConfigError, match="OPENAI_MODEL"):
        OpenAICompatibleClient()


async def test_agent_loop_over_http(server: tuple[str, _Scripted]) -> None:
    url, _ = server
    tools = LocalToolExecutor()
    tools.add(
        lambda a, b: a + b,
        name="add",
        parameters={"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
    )
    async with _client(url, "agent") as client:
        state = await AgentLoop(client, tools, LoopSettings(system_prompt="add numbers")).start("2 + 3?")
    assert (state.status, state.answer) == ("succeeded", "the sum is 5")
    assert state.usage == Usage(24, 6)
