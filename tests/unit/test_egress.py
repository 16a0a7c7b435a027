"""The egress policy: what it refuses by default, what an operator opens, and that connections go where checked.

Real sockets on loopback only; a name's resolution is replaced where a test needs a name to point somewhere.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from foundation.errors import ValidationFailed
from toolserver.outbound.egress import EgressDenied, EgressPolicy, GuardedTransport, guarded_client
from toolserver.runs.llm import LLMPolicy, build_llm
from toolserver.tools import CallContext, HttpToolRunner, ToolCallFailed, ToolSpec
from toolserver.tools.mcp import McpToolRunner

DEFAULT = EgressPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:0:127.0.0.1",  # SIIT
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "fec0::1",
        "5f00::1",
        "3fff::1",
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert not DEFAULT.allows_address(ipaddress.ip_address(address), 80)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_allowed_by_default(address: str) -> None:
    assert DEFAULT.allows_address(ipaddress.ip_address(address), 443)


def test_operator_entries() -> None:
    policy = EgressPolicy.parse(
        " 10.1.0.0/16, 127.0.0.1:8931 ,[::1]:9000, LLM.internal., localhost:11434,[fd00::5]"
    )
    ip = ipaddress.ip_address
    assert policy.allows_address(ip("10.1.200.3"), 1) and not policy.allows_address(ip("10.2.0.1"), 1)
    assert policy.allows_address(ip("127.0.0.1"), 8931) and not policy.allows_address(ip("127.0.0.1"), 8265)
    assert policy.allows_address(ip("::1"), 9000) and not policy.allows_address(ip("::1"), 9001)
    assert policy.allows_address(ip("fd00::5"), 1)
    assert policy.allows_host("llm.internal", 1) and policy.allows_host("LLM.Internal.", 443)
    assert policy.allows_host("localhost", 11434) and not policy.allows_host("localhost", 11435)
    assert EgressPolicy.parse("*").allows_address(ip("169.254.169.254"), 80)
    assert EgressPolicy.parse("") == DEFAULT


@pytest.mark.parametrize(
    "entry", ["http://x", "a b", "host:port", "127.0.0.1:0", "127.0.0.1:70000", "*.example", "[::1"]
)
def test_bad_entries_are_named(entry: str) -> None:
    with pytest.raises(ValueError, match="TOOLSERVER_EGRESS_ALLOW"):
        EgressPolicy.parse(entry)


def test_settings_refuse_a_bad_entry_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolserver.config import Settings

    monkeypatch.setenv("TOOLSERVER_EGRESS_ALLOW", "10.0.0.0/8,not a host")
    with pytest.raises(ValueError, match="not a host"):
        Settings()
    monkeypatch.setenv("TOOLSERVER_EGRESS_ALLOW", "10.0.0.0/8,127.0.0.1:8931")
    assert Settings().egress_policy().allows_address(ipaddress.ip_address("127.0.0.1"), 8931)


async def test_names_are_checked_by_every_address_they_resolve_to() -> None:
    with pytest.raises(EgressDenied, match="localhost") as denied:
        await DEFAULT.pin("localhost", 80)  # /etc/hosts: loopback
    assert "127.0.0.1" not in denied.value.message  # what a name resolves to is not told to the tenant
    with pytest.raises(EgressDenied, match=r"169\.254\.169\.254"):
        await DEFAULT.pin("169.254.169.254", 80)
    assert await EgressPolicy.parse("localhost:8080").pin("localhost", 8080) == "localhost"


# --- real requests ------------------------------------------------------------------------------------------


class Upstream:
    """A loopback HTTP server that records the Host header of each request it gets."""

    def __init__(self, host: str, ssl: tuple[Path, Path] | None = None) -> None:
        self.seen: list[str] = []
        app = FastAPI()

        @app.get("/echo")
        async def echo(request: Request) -> dict[str, Any]:
            self.seen.append(request.headers["host"])
            return {"host": request.headers["host"]}

        @app.get("/redirect")
        async def redirect(to: str) -> Response:
            self.seen.append("redirect")
            return Response(status_code=307, headers={"Location": to})

        with socket.socket() as probe:
            probe.bind((host, 0))
            self.port = probe.getsockname()[1]
        self.host = host
        tls = {"ssl_certfile": str(ssl[0]), "ssl_keyfile": str(ssl[1])} if ssl else {}
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="error", **tls))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Upstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def inner() -> Iterator[Upstream]:
    """What must stay unreachable: a service on 127.0.0.1."""
    with Upstream("127.0.0.1") as upstream:
        yield upstream


@pytest.fixture
def outer() -> Iterator[Upstream]:
    """What the operator allows: a service on 127.0.0.2 (another loopback address, a stand-in for a public one)."""
    with Upstream("127.0.0.2") as upstream:
        yield upstream


def http_tool(url: str, **config: Any) -> ToolSpec:
    return ToolSpec(name="probe", kind="http", config={"url": url, **config})


CONTEXT = CallContext(namespace="team-a")


async def test_http_tools_are_refused_before_anything_is_sent(inner: Upstream) -> None:
    runner = HttpToolRunner()  # the default policy
    try:
        with pytest.raises(EgressDenied) as denied:
            await runner.run(http_tool(inner.url + "/echo"), {}, CONTEXT)
    finally:
        await runner.aclose()
    assert denied.value.status == 403 and denied.value.type == "egress_denied"
    assert "TOOLSERVER_EGRESS_ALLOW" in denied.value.message
    assert inner.seen == []


async def test_unresolvable_names_are_a_tool_failure_not_a_crash() -> None:
    runner = HttpToolRunner()
    try:
        for host in ("a" * 70 + ".example", "x..y"):  # refused by the IDNA codec before any lookup
            with pytest.raises(ToolCallFailed) as failed:
                await runner.run(http_tool(f"http://{host}/"), {}, CONTEXT)
            assert failed.value.error_type == "connection_error"
    finally:
        await runner.aclose()


async def test_a_redirect_cannot_lead_back_inside(inner: Upstream, outer: Upstream) -> None:
    runner = HttpToolRunner(policy=EgressPolicy.parse(f"127.0.0.2:{outer.port}"))
    try:
        followed = await runner.run(
            http_tool(outer.url + "/redirect", follow_redirects=True), {"to": outer.url + "/echo"}, CONTEXT
        )
        assert followed["body"] == {"host": f"127.0.0.2:{outer.port}"}
        with pytest.raises(EgressDenied):
            await runner.run(
                http_tool(outer.url + "/redirect", follow_redirects=True),
                {"to": inner.url + "/echo"},
                CONTEXT,
            )
    finally:
        await runner.aclose()
    assert inner.seen == []


async def test_a_name_connects_to_the_address_that_was_checked(
    outer: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name whose first answer is allowed and whose later answers are not (DNS rebinding) is resolved once."""
    answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"])
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "api.example":
            return await real(next(answers), port, *args, **kwargs)
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    client = guarded_client(EgressPolicy.parse(f"127.0.0.2:{outer.port}"))
    async with client:
        answer = await client.get(f"http://api.example:{outer.port}/echo")
    assert answer.json() == {"host": f"api.example:{outer.port}"}  # the name is kept in Host
    assert outer.seen == [f"api.example:{outer.port}"]
    assert next(answers) == "127.0.0.1"  # resolved exactly once


async def test_environment_proxies_do_not_bypass_the_policy(
    inner: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", inner.url)
    monkeypatch.setenv("ALL_PROXY", inner.url)
    async with guarded_client(DEFAULT) as client:
        with pytest.raises(EgressDenied):
            await client.get("http://169.254.169.254/latest/meta-data/")
    assert inner.seen == []


async def test_mcp_tools_and_imports_are_under_the_same_policy(inner: Upstream) -> None:
    runner = McpToolRunner()
    with pytest.raises(EgressDenied):
        await runner.list_tools(inner.url + "/mcp", {}, 10)
    with pytest.raises(EgressDenied):
        await runner.run(
            ToolSpec(name="x", kind="mcp", config={"url": inner.url + "/mcp", "tool": "x"}), {}, CONTEXT
        )  # type: ignore[arg-type]
    assert inner.seen == []
    # Allowed, the same url gets through to the (non-MCP) service: the refusal above was the policy's.
    opened = McpToolRunner(policy=EgressPolicy.parse(f"127.0.0.1:{inner.port}"))
    with pytest.raises(ToolCallFailed):
        await opened.list_tools(inner.url + "/mcp", {}, 10)


# --- agents' LLM endpoints and keys -----------------------------------------------------------------------


def test_llm_base_url_and_key_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator")
    monkeypatch.setenv("SHARED_LLM_KEY", "sk-shared")
    plain = {"provider": "openai", "base_url": "https://llm.example/v1", "model": "m"}
    assert build_llm(plain).api_key == ""  # type: ignore[attr-defined]  # not the server's OPENAI_API_KEY
    assert build_llm({**plain, "api_key_secret": "k"}, secret="sk-tenant").api_key == "sk-tenant"  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed) as env:
        build_llm({**plain, "api_key_env": "OPENAI_API_KEY"})
    assert env.value.details["field"] == "llm.api_key_env"
    shared = LLMPolicy(key_envs=frozenset({"SHARED_LLM_KEY"}))
    assert build_llm({**plain, "api_key_env": "SHARED_LLM_KEY"}, shared).api_key == "sk-shared"  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed):
        build_llm({**plain, "api_key": "a", "api_key_secret": "b"})
    for url in ("http://169.254.169.254/v1", "http://127.0.0.1:8265/v1", "http://[::1]:8000/v1"):
        with pytest.raises(ValidationFailed) as bad:
            build_llm({**plain, "base_url": url})
        assert bad.value.details["field"] == "llm.base_url"
    local = LLMPolicy(egress=EgressPolicy.parse("127.0.0.1:11434"))
    build_llm({**plain, "base_url": "http://127.0.0.1:11434/v1"}, local)


async def test_llm_requests_go_through_the_policy(inner: Upstream) -> None:
    llm = build_llm(
        {
            "provider": "openai",
            "base_url": f"http://localhost:{inner.port}/v1",
            "model": "m",
            "max_retries": 0,
        }
    )
    try:
        with pytest.raises(EgressDenied):
            await llm.complete([{"role": "user", "content": "hi"}], None)
    finally:
        await llm.aclose()  # type: ignore[attr-defined]
    assert inner.seen == []


async def test_a_tls_connection_made_for_one_name_never_carries_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two names on one address: the pool of the first (verified for it) must not serve the second."""
    ca, cert, key = _tls_files(tmp_path, "a.test")
    with Upstream("127.0.0.2", ssl=(cert, key)) as upstream:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host in ("a.test", "victim.test"):
                return await real("127.0.0.2", port, *args, **kwargs)
            return await real(host, port, *args, **kwargs)

        monkeypatch.setattr(loop, "getaddrinfo", resolve)
        transport = GuardedTransport(
            EgressPolicy.parse(f"127.0.0.2:{upstream.port}"),
            verify=ssl.create_default_context(cafile=str(ca)),
        )
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            own = await client.get(f"https://a.test:{upstream.port}/echo")
            assert own.json() == {"host": f"a.test:{upstream.port}"}
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await client.get(f"https://victim.test:{upstream.port}/echo", headers={"X-Api-Key": "victim"})
    assert upstream.seen == [f"a.test:{upstream.port}"]


def _tls_files(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for `name` only; (CA file, certificate file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def subject(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def issue(
        common_name: str, public_key: Any, signer: Any, *extensions: tuple[Any, bool]
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject(common_name))
            .issuer_name(subject("test ca"))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = issue(
        "test ca", ca_key.public_key(), ca_key, (x509.BasicConstraints(ca=True, path_length=None), True)
    )
    leaf = issue(
        name, leaf_key.public_key(), ca_key, (x509.SubjectAlternativeName([x509.DNSName(name)]), False)
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths
