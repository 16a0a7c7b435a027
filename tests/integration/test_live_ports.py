"""Ports for real: a web app started in a sandbox through the API, reached through /ports/ and a shared URL.

`toolserver up` on Ray Serve, real HTTP, real Docker; the sandbox keeps network `none` throughout.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from tests.integration.serverproc import ServerProcess
from toolserver.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

APP = Path(__file__).with_name("sandbox_webapp.py").read_bytes()
MAX_CONNECTIONS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image) -> Iterator[ServerProcess]:
    env = {
        "TOOLSERVER_POOL_SIZE": "1",
        "TOOLSERVER_SANDBOX_IMAGE": sandbox_image,
        "TOOLSERVER_PORT_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    proc = ServerProcess(tmp_path_factory.mktemp("tshome"), env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(server) -> dict[str, str]:
    with Client(server.url, server.admin_key) as admin:
        return {name: admin.keys.create(f"team-{name}", name).key for name in ("a", "b")}


def http(server: ServerProcess, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def a(server, keys) -> Iterator[httpx.Client]:
    with http(server, keys["a"]) as client:
        yield client


def wait_for_line(a: httpx.Client, session: str, pid: int, text: str) -> None:
    offset, seen = 0, ""
    while text not in seen:
        out = a.get(f"/v1/sessions/{session}/processes/{pid}/output", params={"offset": offset, "wait_s": 20})
        body = out.json()
        seen += "".join(c["data"] for c in body["chunks"])
        offset = body["next_offset"]
        assert not body["done"], seen


@pytest.fixture(scope="module")
def session(a) -> str:
    """A session running the echo app on 8080 and `python -m http.server` on 8000, both started by the API."""
    sid = str(a.post("/v1/sessions", json={}).json()["id"])
    assert a.put(f"/v1/sessions/{sid}/files/app.py", content=APP).status_code == 200
    assert (
        a.put(f"/v1/sessions/{sid}/files/site/hello.txt", content=b"hello from the sandbox\n").status_code
        == 200
    )
    app = a.post(f"/v1/sessions/{sid}/processes", json={"command": "python3 app.py 8080"}).json()
    wait_for_line(a, sid, app["pid"], "ready")
    site = a.post(
        f"/v1/sessions/{sid}/processes",
        json={"command": "python3 -m http.server 8000 --bind 127.0.0.1", "cwd": "site"},
    ).json()
    wait_for_line(a, sid, site["pid"], "Serving HTTP")
    return sid


def test_http_server_started_through_the_api_is_reachable(a, session) -> None:
    listing = a.get(f"/v1/sessions/{session}/ports/8000/")
    assert listing.status_code == 200 and "hello.txt" in listing.text
    assert a.get(f"/v1/sessions/{session}/ports/8000/hello.txt").text == "hello from the sandbox\n"
    echo = a.get(f"/v1/sessions/{session}/ports/8080/some/where", params={"q": "1"}).json()
    assert echo["path"] == "/some/where?q=1"
    sent = {k.lower(): v for k, v in echo["headers"].items()}
    assert "authorization" not in sent and "cookie" not in sent  # the API key stays outside
    assert sent["host"] == "127.0.0.1:8080"


def test_large_bodies_and_streamed_answers_pass(a, session) -> None:
    body = bytes(range(256)) * 20000  # 5 MB
    reply = a.post(f"/v1/sessions/{session}/ports/8080/upload", content=body).json()
    assert reply == {"method": "POST", "received": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    with a.stream("GET", f"/v1/sessions/{session}/ports/8080/stream") as streamed:
        assert streamed.status_code == 200
        assert "".join(streamed.iter_text()) == "".join(f"chunk {i}\n" for i in range(5))


def test_a_websocket_echoes_through_the_proxy(server, keys, session) -> None:
    url = server.url.replace("http://", "ws://") + f"/v1/sessions/{session}/ports/8080/ws"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {keys['a']}"}) as ws:
        for message in ("hello", "x" * 100_000):
            ws.send(message)
            assert ws.recv() == message
        ws.send(b"\x00\x01binary")
        assert ws.recv() == b"\x00\x01binary"
    with pytest.raises(InvalidStatus):
        ws_connect(url).close()  # no key, no handshake
    with pytest.raises(InvalidStatus):
        ws_connect(url, additional_headers={"Authorization": f"Bearer {keys['b']}"}).close()


def opened(url: str, headers: dict[str, str]) -> ClientConnection:
    """A WebSocket, once the server has released connections that were closed a moment ago."""
    for _ in range(100):
        try:
            return ws_connect(url, additional_headers=headers)
        except InvalidStatus:
            time.sleep(0.1)
    return ws_connect(url, additional_headers=headers)


@pytest.fixture
def echo_session(a) -> Iterator[str]:
    """A session of its own with the echo app on 8080: the cap test's connections are released as the server
    sees them close, which on a loaded machine can outlast the test, so they must not take other tests' slots."""
    sid = str(a.post("/v1/sessions", json={}).json()["id"])
    assert a.put(f"/v1/sessions/{sid}/files/app.py", content=APP).status_code == 200
    app = a.post(f"/v1/sessions/{sid}/processes", json={"command": "python3 app.py 8080"}).json()
    wait_for_line(a, sid, app["pid"], "ready")
    yield sid
    a.delete(f"/v1/sessions/{sid}")


def test_the_connection_cap_holds(server, keys, echo_session) -> None:
    session = echo_session
    url = server.url.replace("http://", "ws://") + f"/v1/sessions/{session}/ports/8080/ws"
    auth = {"Authorization": f"Bearer {keys['a']}"}
    held = [opened(url, auth) for _ in range(MAX_CONNECTIONS)]
    try:
        with pytest.raises(InvalidStatus):
            ws_connect(url, additional_headers=auth).close()
    finally:
        for ws in held:
            ws.close()
    with opened(url, auth) as ws:  # room again, once the server has seen the others go
        ws.send("again")
        assert ws.recv() == "again"
    # Every slot comes back as the server sees its connection close: none is leaked.
    again = [opened(url, auth) for _ in range(MAX_CONNECTIONS)]
    for ws in again:
        ws.close()


def test_a_shared_url_works_without_the_key_until_revoked_or_expired(server, a, session) -> None:
    share = a.post(f"/v1/sessions/{session}/ports/8000/share", json={"ttl_s": 600})
    assert share.status_code == 201, share.text
    url = share.json()["url"]
    assert url.startswith(server.url + "/p/")
    with httpx.Client(timeout=30) as browser:  # no API key at all
        assert browser.get(url + "hello.txt").text == "hello from the sandbox\n"
        token = share.json()["token"]
        where, secret = token.rsplit(".", 1)
        guessed = where + "." + secret[:-2] + ("AA" if not secret.endswith("AA") else "BB")
        for bad in (guessed, where + ".x", "nonsense", "a" * 2000, where):
            assert browser.get(f"{server.url}/p/{bad}/hello.txt").status_code == 404, bad
        ws_url = url.replace("http://", "ws://")
        app_share = a.post(f"/v1/sessions/{session}/ports/8080/share", json={"ttl_s": 600}).json()
        with ws_connect(app_share["url"].replace("http://", "ws://") + "ws") as ws:
            ws.send("shared")
            assert ws.recv() == "shared"
        revoked = a.delete(f"/v1/sessions/{session}/ports/8000/share/{share.json()['id']}")
        assert revoked.status_code == 204
        assert browser.get(url + "hello.txt").status_code == 404
        with pytest.raises(InvalidStatus):
            ws_connect(ws_url).close()
        short = a.post(f"/v1/sessions/{session}/ports/8000/share", json={"ttl_s": 1}).json()
        assert browser.get(short["url"] + "hello.txt").status_code == 200
        time.sleep(1.5)  # past its expiry
        assert browser.get(short["url"] + "hello.txt").status_code == 404


def test_another_tenant_gets_404(server, keys, session) -> None:
    with http(server, keys["b"]) as b:
        assert b.get(f"/v1/sessions/{session}/ports/8000/hello.txt").status_code == 404
        assert b.post(f"/v1/sessions/{session}/ports/8000/share", json={"ttl_s": 60}).status_code == 404


def test_bad_ports_and_paths_stay_inside_the_sandbox(server, keys, a, session) -> None:
    assert a.get(f"/v1/sessions/{session}/ports/0/").status_code == 422
    assert a.get(f"/v1/sessions/{session}/ports/70000/").status_code == 422
    closed = a.get(f"/v1/sessions/{session}/ports/8081/")
    assert closed.status_code == 502 and closed.json()["error"]["type"] == "port_closed"
    raw = f"/v1/sessions/{session}/ports/8080/../../../../v1/sessions"
    with httpx.Client(timeout=30) as plain:
        request = plain.build_request("GET", server.url, headers={"Authorization": f"Bearer {keys['a']}"})
        request.url = request.url.copy_with(raw_path=raw.encode())
        escaped = plain.send(request)
    if escaped.status_code == 200:  # it reached the app in the sandbox, never the server's own routes
        assert json.loads(escaped.text)["path"].endswith("/v1/sessions") and "sessions" not in escaped.json()
    else:
        assert escaped.status_code == 404
    encoded = a.get(f"/v1/sessions/{session}/ports/8080/%2e%2e/%2e%2e/v1/sessions").json()
    assert "sessions" not in encoded and encoded["method"] == "GET"


def test_the_sandbox_still_has_no_network(a, session) -> None:
    probe = "python3 -c \"import socket; s=socket.socket(); s.settimeout(2); s.connect(('1.1.1.1', 80))\""
    shell = a.post(
        f"/v1/sessions/{session}/shell", json={"command": f"{probe} && echo reached || echo unreachable"}
    )
    assert shell.json()["output"].strip().endswith("unreachable")
    interfaces = a.post(f"/v1/sessions/{session}/shell", json={"command": "ls /sys/class/net"}).json()[
        "output"
    ]
    assert interfaces.split() == ["lo"]
