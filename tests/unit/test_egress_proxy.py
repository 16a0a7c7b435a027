"""The node's egress proxy of one session: allow-list, pinned address check, SNI, caps, journal."""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile

import pytest

from sandbox.egress import EgressLimits, parse_rules
from sandbox.egress import proxy as proxy_module
from sandbox.egress.proxy import SessionProxy
from toolserver.outbound.egress import EgressPolicy


class Upstream:
    """A loopback TCP server that records what it was sent and answers one HTTP response."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read(65536)
            self.received.append(data)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


def _proxy(entries: list[str], allow: str, **limits: int) -> SessionProxy:
    path = os.path.join(tempfile.mkdtemp(prefix="egp-"), "egress.sock")
    denied: list[object] = []
    proxy = SessionProxy(
        "ses-1",
        parse_rules(entries),
        EgressPolicy.parse(allow),
        EgressLimits(**limits),  # type: ignore[arg-type]
        path,
        on_denied=denied.append,
    )
    proxy.heard = denied  # type: ignore[attr-defined]
    return proxy


async def _ask(proxy: SessionProxy, data: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(proxy.socket_path)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_plain_http_to_an_allowed_host_goes_out_in_origin_form_with_connection_close() -> None:
    async def main() -> None:
        async with Upstream() as up:
            proxy = _proxy([f"127.0.0.1:{up.port}"], f"127.0.0.1:{up.port}")
            await proxy.start()
            answer = await _ask(
                proxy,
                f"GET http://127.0.0.1:{up.port}/simple/?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{up.port}\r\n"
                "Proxy-Authorization: secret\r\nConnection: keep-alive\r\n\r\n".encode(),
            )
            await proxy.close()
        assert answer.endswith(b"hello")
        sent = up.received[0].decode()
        assert sent.startswith("GET /simple/?q=1 HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{up.port}" in sent.lower() and "connection: close" in sent.lower()
        assert "secret" not in sent and "keep-alive" not in sent
        report = proxy.journal.report()
        assert report["allowed"] == 1 and report["denied"] == 0
        entry = report["connections"][0]
        assert (entry["host"], entry["port"], entry["method"], entry["allowed"]) == (
            "127.0.0.1",
            up.port,
            "GET",
            True,
        )
        assert entry["bytes_down"] == len(answer) and entry["bytes_up"] == len(up.received[0])

    run(main())


def test_a_host_off_the_list_is_refused_with_403_and_journaled() -> None:
    async def main() -> None:
        async with Upstream() as up:
            proxy = _proxy(["pypi.org"], f"127.0.0.1:{up.port}")
            await proxy.start()
            answer = await _ask(proxy, f"CONNECT 127.0.0.1:{up.port} HTTP/1.1\r\n\r\n".encode())
            plain = await _ask(proxy, b"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n")
            await proxy.close()
        assert answer.startswith(b"HTTP/1.1 403") and b"not on this sandbox's egress allow-list" in answer
        assert plain.startswith(b"HTTP/1.1 403")
        assert up.received == []
        report = proxy.journal.report()
        assert report["denied"] == 2 and len(proxy.heard) == 2  # type: ignore[attr-defined]

    run(main())


def test_an_allowed_name_that_resolves_to_loopback_is_still_refused() -> None:
    async def main() -> None:
        async with Upstream() as up:
            proxy = _proxy([f"localhost:{up.port}"], "")  # the operator opened nothing
            await proxy.start()
            answer = await _ask(proxy, f"CONNECT localhost:{up.port} HTTP/1.1\r\n\r\n".encode())
            literal = _proxy([f"127.0.0.1:{up.port}"], "")
            await literal.start()
            direct = await _ask(literal, f"CONNECT 127.0.0.1:{up.port} HTTP/1.1\r\n\r\n".encode())
            await proxy.close()
            await literal.close()
        assert answer.startswith(b"HTTP/1.1 403") and b"not a public address" in answer
        assert direct.startswith(b"HTTP/1.1 403")
        assert up.received == []

    run(main())


def _client_hello(name: str) -> bytes:
    """A real ClientHello for `name`, as Python's ssl module writes it."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_connect_checks_the_tls_server_name_against_the_target() -> None:
    async def main() -> None:
        async with Upstream() as up:
            proxy = _proxy([f"localhost:{up.port}"], f"localhost:{up.port}")
            await proxy.start()
            good = _client_hello("localhost")
            ok = await _ask(proxy, f"CONNECT localhost:{up.port} HTTP/1.1\r\n\r\n".encode() + good)
            bad = await _ask(
                proxy,
                f"CONNECT localhost:{up.port} HTTP/1.1\r\n\r\n".encode() + _client_hello("evil.example"),
            )
            await proxy.close()
        assert ok.startswith(b"HTTP/1.1 200 Connection Established") and ok.endswith(b"hello")
        assert up.received == [good]  # the hello went on unchanged, once
        assert bad == b"HTTP/1.1 200 Connection Established\r\n\r\n"  # then closed, nothing sent upstream
        denied = [c for c in proxy.journal.report()["connections"] if not c["allowed"]]
        assert "evil.example" in denied[0]["reason"]

    run(main())


def test_bad_requests_get_400_and_the_proxy_keeps_serving() -> None:
    async def main() -> None:
        async with Upstream() as up:
            proxy = _proxy([f"127.0.0.1:{up.port}"], f"127.0.0.1:{up.port}")
            await proxy.start()
            mismatch = await _ask(
                proxy, f"GET http://127.0.0.1:{up.port}/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n".encode()
            )
            garbage = await _ask(proxy, b"\x00\x01 nonsense\r\n\r\n")
            huge = await _ask(proxy, b"GET http://x/ HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n")
            origin = await _ask(proxy, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            after = await _ask(proxy, f"GET http://127.0.0.1:{up.port}/ HTTP/1.1\r\n\r\n".encode())
            await proxy.close()
        for answer in (mismatch, garbage, huge, origin):
            assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
        assert after.endswith(b"hello") and len(up.received) == 1

    run(main())


def test_open_connections_are_capped() -> None:
    async def main() -> None:
        proxy = _proxy(["pypi.org"], "", max_connections=2)
        await proxy.start()
        held = [await asyncio.open_unix_connection(proxy.socket_path) for _ in range(2)]
        await asyncio.sleep(0.05)
        over = await _ask(proxy, b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n")
        for _, writer in held:
            writer.close()
        await proxy.close()
        assert over.startswith(b"HTTP/1.1 429") and b"2 open connections" in over

    run(main())


def test_the_bandwidth_bucket_makes_a_burst_wait_for_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    clock = [100.0]

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(proxy_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(proxy_module.asyncio, "sleep", sleep)
    bucket = proxy_module._Bucket(1000)

    async def main() -> None:
        await bucket.take(1000)  # the first second's burst
        await bucket.take(500)
        await bucket.take(500)

    asyncio.run(main())
    assert slept == [pytest.approx(0.5), pytest.approx(0.5)]


def test_a_bad_port_or_url_is_a_journaled_400_not_an_unhandled_error() -> None:
    async def main() -> None:
        proxy = _proxy(["pypi.org"], "")
        await proxy.start()
        big_port = await _ask(proxy, b"GET http://pypi.org:99999/ HTTP/1.1\r\n\r\n")
        bracket = await _ask(proxy, b"GET http://[/ HTTP/1.1\r\nHost: x\r\n\r\n")
        long_name = await _ask(proxy, b"CONNECT " + b"a" * 5000 + b":443 HTTP/1.1\r\n\r\n")
        await proxy.close()
        assert big_port.startswith(b"HTTP/1.1 400") and bracket.startswith(b"HTTP/1.1 400"), (
            big_port,
            bracket,
        )
        assert long_name.startswith(b"HTTP/1.1 403")
        denied = proxy.journal.report()["connections"]
        assert len(denied) == 3 and all(len(c["host"]) <= 256 and len(c["reason"]) <= 256 for c in denied)

    run(main())


def test_a_lookup_that_never_answers_times_out_and_holds_at_most_two_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(proxy_module, "RESOLVE_TIMEOUT_S", 0.3)
    started: list[str] = []
    release = asyncio.Event()

    async def hanging(host: str, port: int) -> list[object]:
        started.append(host)
        await release.wait()
        return []

    async def main() -> None:
        path = os.path.join(tempfile.mkdtemp(prefix="egp-"), "egress.sock")
        proxy = SessionProxy(
            "ses-1",
            parse_rules(["*.slow.example"]),
            EgressPolicy.parse(""),
            EgressLimits(),
            path,
            resolve=hanging,
        )
        await proxy.start()
        answers = await asyncio.gather(
            *(_ask(proxy, f"CONNECT h{i}.slow.example:443 HTTP/1.1\r\n\r\n".encode()) for i in range(6))
        )
        assert len(started) == 2  # the other four wait for a slot, and time out waiting
        release.set()
        await proxy.close()
        assert all(a.startswith(b"HTTP/1.1 504") for a in answers), answers

    run(main())


def test_bytes_sent_with_the_connect_head_go_on_through_a_plain_tunnel() -> None:
    async def main() -> None:
        async with Upstream() as up:
            proxy = _proxy([f"127.0.0.1:{up.port}"], f"127.0.0.1:{up.port}")
            await proxy.start()
            answer = await _ask(proxy, f"CONNECT 127.0.0.1:{up.port} HTTP/1.1\r\n\r\nPING-and-more".encode())
            await proxy.close()
        assert answer.startswith(b"HTTP/1.1 200 Connection Established") and answer.endswith(b"hello")
        assert up.received == [b"PING-and-more"]

    run(main())
