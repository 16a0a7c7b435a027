"""Python SDK over the HTTP API: `Client` (sync) and `AsyncClient` share one table of endpoints.

from toolserver import Client
with Client() as ts:                      # URL and key from TOOLSERVER_URL / TOOLSERVER_API_KEY,
    sid = ts.create_session()["id"]        # else from the state directory `toolserver up` wrote
    print(ts.shell(sid, "echo hi")["output"])
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from foundation.errors import ToolServerError

__all__ = ["ApiError", "AsyncClient", "Client", "Endpoints"]


class ApiError(ToolServerError):
    """An error answer from the server; `status` and `type` are the server's."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(
            str(error.get("message", body)), **{k: v for k, v in error.items() if k != "message"}
        )
        self.status_code = status
        self.error_type = str(error.get("type", "http_error"))

    def __str__(self) -> str:
        return f"{self.status_code} {self.error_type}: {self.message}"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    raw: bool = False  # return bytes instead of decoded JSON


class Endpoints:
    """Each API operation as a Call; the clients send them."""

    @staticmethod
    def health() -> Call:
        return Call("GET", "/healthz")

    @staticmethod
    def create_session(**spec: Any) -> Call:
        return Call("POST", "/v1/sessions", json=spec)

    @staticmethod
    def sessions() -> Call:
        return Call("GET", "/v1/sessions")

    @staticmethod
    def session(session_id: str) -> Call:
        return Call("GET", f"/v1/sessions/{session_id}")

    @staticmethod
    def delete_session(session_id: str) -> Call:
        return Call("DELETE", f"/v1/sessions/{session_id}")

    @staticmethod
    def shell(session_id: str, command: str, timeout_s: float = 30.0) -> Call:
        return Call(
            "POST", f"/v1/sessions/{session_id}/shell", json={"command": command, "timeout_s": timeout_s}
        )

    @staticmethod
    def python(session_id: str, code: str, timeout_s: float = 30.0) -> Call:
        return Call("POST", f"/v1/sessions/{session_id}/python", json={"code": code, "timeout_s": timeout_s})

    @staticmethod
    def restart_python(session_id: str) -> Call:
        return Call("POST", f"/v1/sessions/{session_id}/python/restart")

    @staticmethod
    def upload(session_id: str, path: str, data: bytes) -> Call:
        return Call("PUT", f"/v1/sessions/{session_id}/files/{path}", content=data)

    @staticmethod
    def download(session_id: str, path: str) -> Call:
        return Call("GET", f"/v1/sessions/{session_id}/files/{path}", raw=True)

    @staticmethod
    def list_files(session_id: str, dir: str = "") -> Call:
        return Call("GET", f"/v1/sessions/{session_id}/files", params={"dir": dir})

    @staticmethod
    def tools(format: str = "native") -> Call:
        return Call("GET", "/v1/tools", params={"format": format})

    @staticmethod
    def search_tools(q: str, k: int = 10) -> Call:
        return Call("GET", "/v1/tools/search", params={"q": q, "k": k})

    @staticmethod
    def register_tool(**tool: Any) -> Call:
        return Call("POST", "/v1/tools", json=tool)

    @staticmethod
    def import_openapi(document: dict[str, Any] | str, base_url: str | None = None, prefix: str = "") -> Call:
        return Call(
            "POST",
            "/v1/tools/import/openapi",
            json={"document": document, "base_url": base_url, "prefix": prefix},
        )

    @staticmethod
    def tool(name: str) -> Call:
        return Call("GET", f"/v1/tools/{name}")

    @staticmethod
    def delete_tool(name: str) -> Call:
        return Call("DELETE", f"/v1/tools/{name}")

    @staticmethod
    def call_tool(name: str, arguments: dict[str, Any] | None = None, session_id: str | None = None) -> Call:
        return Call(
            "POST", f"/v1/tools/{name}/call", json={"arguments": arguments or {}, "session_id": session_id}
        )

    @staticmethod
    def create_key(namespace: str, name: str = "", admin: bool = False) -> Call:
        return Call("POST", "/v1/keys", json={"namespace": namespace, "name": name, "admin": admin})

    @staticmethod
    def keys() -> Call:
        return Call("GET", "/v1/keys")

    @staticmethod
    def revoke_key(key_id: str) -> Call:
        return Call("DELETE", f"/v1/keys/{key_id}")

    @staticmethod
    def put_secret(name: str, value: str) -> Call:
        return Call("PUT", f"/v1/secrets/{name}", json={"value": value})

    @staticmethod
    def secrets() -> Call:
        return Call("GET", "/v1/secrets")

    @staticmethod
    def audit(limit: int = 100) -> Call:
        return Call("GET", "/v1/audit", params={"limit": limit})

    @staticmethod
    def define_agent(**agent: Any) -> Call:
        return Call("POST", "/v1/agents", json=agent)

    @staticmethod
    def agents() -> Call:
        return Call("GET", "/v1/agents")

    @staticmethod
    def agent(name: str) -> Call:
        return Call("GET", f"/v1/agents/{name}")

    @staticmethod
    def start_run(agent: str, task: str, session_id: str | None = None) -> Call:
        return Call("POST", "/v1/runs", json={"agent": agent, "task": task, "session_id": session_id})

    @staticmethod
    def run(run_id: str) -> Call:
        return Call("GET", f"/v1/runs/{run_id}")

    @staticmethod
    def runs(status: str | None = None) -> Call:
        return Call("GET", "/v1/runs", params={"status": status} if status else {})

    @staticmethod
    def human_requests(status: str | None = "pending") -> Call:
        return Call("GET", "/v1/human-requests", params={"status": status} if status else {})

    @staticmethod
    def human_request(request_id: str, wait_s: float = 0.0) -> Call:
        return Call("GET", f"/v1/human-requests/{request_id}", params={"wait_s": wait_s})

    @staticmethod
    def answer_human(request_id: str, answer: str) -> Call:
        return Call("POST", f"/v1/human-requests/{request_id}/answer", json={"answer": answer})


def default_connection(url: str | None = None, api_key: str | None = None) -> tuple[str, str | None]:
    """URL and key from arguments, else the environment, else the state directory of `toolserver up`."""
    home = Path(os.environ.get("TOOLSERVER_HOME", "~/.toolserver")).expanduser()
    if url is None:
        url = os.environ.get("TOOLSERVER_URL")
    if url is None and (home / "server.json").exists():
        url = json.loads((home / "server.json").read_text()).get("url")
    if api_key is None:
        api_key = os.environ.get("TOOLSERVER_API_KEY")
    if api_key is None and (home / "admin.key").exists():
        api_key = (home / "admin.key").read_text().strip()
    return (url or "http://127.0.0.1:8000").rstrip("/"), api_key


def _decode(call: Call, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"type": "http_error", "message": response.text[:500]}}
        raise ApiError(response.status_code, body)
    if call.raw:
        return response.content
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """Synchronous client; every method of `Endpoints` is a method here."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120.0) -> None:
        self.url, self.api_key = default_connection(url, api_key)
        self._http = httpx.Client(base_url=self.url, headers=_headers(self.api_key), timeout=timeout_s)

    def send(self, call: Call) -> Any:
        response = self._http.request(
            call.method, call.path, json=call.json, params=call.params, content=call.content
        )
        return _decode(call, response)

    def __getattr__(self, name: str) -> Any:
        build = getattr(Endpoints, name)
        return lambda *args, **kwargs: self.send(build(*args, **kwargs))

    def run_events(self, run_id: str, after: int = -1) -> Iterator[tuple[str, Any]]:
        """(event, data) pairs of a run as they happen: `step`, `status`, and finally `end`."""
        event = None
        with self.stream_events(f"/v1/runs/{run_id}/events?after={after}") as lines:
            for line in lines:
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event:
                    yield event, json.loads(line.removeprefix("data: "))

    @contextlib.contextmanager
    def stream_events(self, path: str) -> Iterator[Iterator[str]]:
        """The lines of a server-sent-event stream at `path` (an error status raises ApiError)."""
        with self._http.stream("GET", path, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                _decode(Call("GET", path), response)
            yield response.iter_lines()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """Asynchronous client; every method of `Endpoints` is a coroutine method here."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120.0) -> None:
        self.url, self.api_key = default_connection(url, api_key)
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(self.api_key), timeout=timeout_s)

    async def send(self, call: Call) -> Any:
        response = await self._http.request(
            call.method, call.path, json=call.json, params=call.params, content=call.content
        )
        return _decode(call, response)

    def __getattr__(self, name: str) -> Any:
        build = getattr(Endpoints, name)
        return lambda *args, **kwargs: self.send(build(*args, **kwargs))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
