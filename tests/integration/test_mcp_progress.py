"""MCP progress for real: the official client's `progress_callback` against `/mcp` over loopback HTTP, with a
Docker sandbox (the app and one sandbox manager in this process, served by uvicorn).

Each command waits for a file that the test writes only once the first progress notification has arrived, so
the call can end at all only if its output reached the client while it ran (no timing is assumed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.integration.inprocess_app import Served, served_app

httpx2 = pytest.importorskip("httpx2")
mcp = pytest.importorskip("mcp")

from mcp import Client as McpClient  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.docker]

SHELL = "echo first; while [ ! -f /workspace/go-shell ]; do sleep 0.1; done; echo second"
PYTHON = (
    "import os, time\n"
    "print('first', flush=True)\n"
    "while not os.path.exists('/workspace/go-python'):\n"
    "    time.sleep(0.1)\n"
    "print('second')\n"
    "6 * 7\n"
)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: Any, sandbox_image: str
) -> Iterator[Served]:
    with served_app(tmp_path_factory.mktemp("mcp-progress"), docker_engine, sandbox_image) as app:
        yield app


@asynccontextmanager
async def mcp_client(served: Served) -> AsyncIterator[Any]:
    headers = {"Authorization": f"Bearer {served.key}", "X-Toolserver-Session": served.session}
    http = httpx2.AsyncClient(headers=headers, timeout=120)
    async with http, McpClient(streamable_http_client(served.url + "/mcp", http_client=http)) as client:
        yield client


class Heard:
    """Progress notifications as they come; on the first, the go-ahead file is written through the REST API."""

    def __init__(self, served: Served, go: str) -> None:
        self.url = f"{served.url}/v1/sessions/{served.session}/files/{go}"
        self.key = served.key
        self.seen: list[tuple[float, str | None]] = []
        self.went = False

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, message))
        if "first" in "".join(m or "" for _, m in self.seen) and not self.went:
            self.went = True
            async with httpx.AsyncClient(timeout=30) as rest:
                answer = await rest.put(
                    self.url, content=b"", headers={"Authorization": f"Bearer {self.key}"}
                )
                assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(("tool", "arguments"), [("shell", {"command": SHELL}), ("python", {"code": PYTHON})])
async def test_a_long_call_reports_its_output_as_progress_before_its_result(
    served: Served, tool: str, arguments: dict[str, Any]
) -> None:
    heard = Heard(served, f"go-{tool}")
    async with mcp_client(served) as client:
        result = await asyncio.wait_for(
            client.call_tool(tool, {**arguments, "timeout_s": 60}, progress_callback=heard), 90
        )
    assert result.is_error is False, result.content
    answer = json.loads(result.content[0].text)
    if tool == "shell":
        assert answer["exit_code"] == 0 and answer["timed_out"] is False
        assert answer["output"].split() == ["first", "second"]
    else:
        assert answer["status"] == "ok" and answer["result"] == "42"
        assert answer["stdout"].split() == ["first", "second"]
    counts = [p for p, _ in heard.seen]
    assert counts == sorted(set(counts)) and counts[0] == 1  # a counter that only goes up
    told = "".join(m or "" for _, m in heard.seen)
    assert told.split() == ["first", "second"]


async def test_without_a_progress_token_the_call_answers_as_before(served: Served) -> None:
    async with mcp_client(served) as client:
        result = await client.call_tool("shell", {"command": "echo plain"})
    assert result.is_error is False and json.loads(result.content[0].text)["output"].strip() == "plain"
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": {"progressToken": 1}}}
    headers = {"Authorization": f"Bearer {served.key}", "Accept": "application/json, text/event-stream"}
    listed = httpx.post(served.url + "/mcp", json=body, headers=headers, timeout=30)
    assert listed.status_code == 200 and listed.headers["content-type"].startswith("application/json")
