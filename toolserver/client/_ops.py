"""Every API operation as a `Request`: written once here, sent by the sync and the async client alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from toolserver import api
from toolserver.client._request import Request

__all__ = ["Ops"]


def _id(value: str) -> str:
    """One path segment: a name or id can never climb to another route (`../keys`)."""
    return quote(str(value), safe="")


def _spec(**fields: Any) -> dict[str, Any]:
    """A body of the fields that were given (None: the server's default)."""
    return {k: v for k, v in fields.items() if v is not None}


class Ops:
    """The operations, grouped as the clients' attributes are; each returns the `Request` to send."""

    # system
    @staticmethod
    def health() -> Request[api.Health]:
        return Request("GET", "/healthz", api.Health)

    @staticmethod
    def create_key(namespace: str, name: str = "", admin: bool = False) -> Request[api.NewApiKey]:
        body = {"namespace": namespace, "name": name, "admin": admin}
        return Request("POST", "/v1/keys", api.NewApiKey, json=body)

    @staticmethod
    def keys() -> Request[list[api.ApiKey]]:
        return Request("GET", "/v1/keys", list[api.ApiKey], unwrap="keys")

    @staticmethod
    def revoke_key(key_id: str) -> Request[None]:
        return Request("DELETE", f"/v1/keys/{_id(key_id)}", None)

    @staticmethod
    def put_secret(name: str, value: str) -> Request[None]:
        return Request("PUT", f"/v1/secrets/{_id(name)}", None, json={"value": value})

    @staticmethod
    def secrets() -> Request[list[str]]:
        return Request("GET", "/v1/secrets", list[str], unwrap="secrets")

    @staticmethod
    def audit(limit: int = 100) -> Request[list[api.AuditEntry]]:
        return Request("GET", "/v1/audit", list[api.AuditEntry], params={"limit": limit}, unwrap="calls")

    # sessions
    @staticmethod
    def create_session(
        image: str | None = None,
        limits: dict[str, Any] | None = None,
        network: str | None = None,
        ttl_s: float | None = None,
        runtime: str | None = None,
        egress: Sequence[str] | None = None,
    ) -> Request[api.Session]:
        if egress is not None:
            if network not in (None, "egress"):
                raise ValueError(f"egress lists what network 'egress' reaches; network {network!r} has none")
            network_body: Any = {"egress": list(egress)}
        else:
            network_body = network
        body = _spec(image=image, limits=limits, network=network_body, ttl_s=ttl_s, runtime=runtime)
        return Request("POST", "/v1/sessions", api.Session, json=body)

    @staticmethod
    def sessions() -> Request[list[api.Session]]:
        return Request("GET", "/v1/sessions", list[api.Session], unwrap="sessions")

    @staticmethod
    def session(session_id: str) -> Request[api.Session]:
        return Request("GET", f"/v1/sessions/{_id(session_id)}", api.Session)

    @staticmethod
    def delete_session(session_id: str) -> Request[None]:
        return Request("DELETE", f"/v1/sessions/{_id(session_id)}", None)

    @staticmethod
    def pause_session(session_id: str) -> Request[api.Session]:
        return Request("POST", f"/v1/sessions/{_id(session_id)}/pause", api.Session)

    @staticmethod
    def resume_session(session_id: str) -> Request[api.Session]:
        return Request("POST", f"/v1/sessions/{_id(session_id)}/resume", api.Session)

    @staticmethod
    def create_snapshot(session_id: str) -> Request[api.Snapshot]:
        return Request("POST", f"/v1/sessions/{_id(session_id)}/snapshots", api.Snapshot)

    @staticmethod
    def snapshots() -> Request[list[api.Snapshot]]:
        return Request("GET", "/v1/snapshots", list[api.Snapshot], unwrap="snapshots")

    @staticmethod
    def delete_snapshot(snapshot_id: str) -> Request[None]:
        return Request("DELETE", f"/v1/snapshots/{_id(snapshot_id)}", None)

    @staticmethod
    def fork(snapshot_id: str, count: int = 1, ttl_s: float | None = None) -> Request[api.Forks]:
        body = _spec(from_snapshot=snapshot_id, count=count, ttl_s=ttl_s)
        return Request("POST", "/v1/sessions", api.Forks, json=body)

    @staticmethod
    def shell(session_id: str, command: str, timeout_s: float = 30.0) -> Request[api.ShellResult]:
        body = {"command": command, "timeout_s": timeout_s}
        return Request("POST", f"/v1/sessions/{_id(session_id)}/shell", api.ShellResult, json=body)

    @staticmethod
    def python(session_id: str, code: str, timeout_s: float = 30.0) -> Request[api.PythonResult]:
        body = {"code": code, "timeout_s": timeout_s}
        return Request("POST", f"/v1/sessions/{_id(session_id)}/python", api.PythonResult, json=body)

    @staticmethod
    def egress(session_id: str) -> Request[api.EgressReport]:
        return Request("GET", f"/v1/sessions/{_id(session_id)}/egress", api.EgressReport)

    @staticmethod
    def restart_python(session_id: str) -> Request[api.PythonRestarted]:
        return Request("POST", f"/v1/sessions/{_id(session_id)}/python/restart", api.PythonRestarted)

    @staticmethod
    def write_file(session_id: str, path: str, data: bytes) -> Request[api.FileEntry]:
        where = f"/v1/sessions/{_id(session_id)}/files/{quote(path.lstrip('/'), safe='/')}"
        return Request("PUT", where, api.FileEntry, content=data)

    @staticmethod
    def read_file(session_id: str, path: str) -> Request[bytes]:
        return Request(
            "GET", f"/v1/sessions/{_id(session_id)}/files/{quote(path.lstrip('/'), safe='/')}", bytes
        )

    @staticmethod
    def list_files(session_id: str, dir: str = "") -> Request[list[api.FileEntry]]:
        where = f"/v1/sessions/{_id(session_id)}/files"
        return Request("GET", where, list[api.FileEntry], params={"dir": dir}, unwrap="entries")

    # tools
    @staticmethod
    def tools(format: str = "native") -> Request[list[dict[str, Any]]]:
        return Request("GET", "/v1/tools", list[dict[str, Any]], params={"format": format}, unwrap="tools")

    @staticmethod
    def search_tools(query: str, k: int = 10) -> Request[list[dict[str, Any]]]:
        params = {"q": query, "k": k}
        return Request("GET", "/v1/tools/search", list[dict[str, Any]], params=params, unwrap="results")

    @staticmethod
    def register_tool(spec: dict[str, Any]) -> Request[api.Tool]:
        return Request("POST", "/v1/tools", api.Tool, json=spec)

    @staticmethod
    def tool(name: str) -> Request[api.Tool]:
        return Request("GET", f"/v1/tools/{_id(name)}", api.Tool)

    @staticmethod
    def delete_tool(name: str) -> Request[None]:
        return Request("DELETE", f"/v1/tools/{_id(name)}", None)

    @staticmethod
    def call_tool(
        name: str, arguments: dict[str, Any] | None = None, session_id: str | None = None
    ) -> Request[api.ToolCallResult | api.WaitingHuman]:
        body = {"arguments": arguments or {}, "session_id": session_id}
        answer = api.ToolCallResult | api.WaitingHuman
        return Request("POST", f"/v1/tools/{_id(name)}/call", answer, json=body)

    @staticmethod
    def import_openapi(
        document: dict[str, Any] | str, base_url: str | None = None, prefix: str = ""
    ) -> Request[list[api.Tool]]:
        body = {"document": document, "base_url": base_url, "prefix": prefix}
        return Request("POST", "/v1/tools/import/openapi", list[api.Tool], json=body, unwrap="tools")

    @staticmethod
    def import_mcp(
        url: str,
        headers: dict[str, str] | None = None,
        secret_headers: dict[str, str] | None = None,
        prefix: str = "",
        timeout_s: float | None = None,
    ) -> Request[list[api.Tool]]:
        body = _spec(
            url=url, headers=headers, secret_headers=secret_headers, prefix=prefix, timeout_s=timeout_s
        )
        return Request("POST", "/v1/tools/import/mcp", list[api.Tool], json=body, unwrap="tools")
