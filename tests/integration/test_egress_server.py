"""Egress by allow-list through the real API: `toolserver up` on Ray Serve, real HTTP, real Docker.

The package index is served on 127.0.0.2 by the test and opened by the operator's TOOLSERVER_SANDBOX_EGRESS_ALLOW;
nothing else is ever reachable. Attempts at the metadata address and at other loopback ports go through the
proxy (which refuses them without connecting); direct ones fail inside the container, which owns only `lo`.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.pkgindex import INDEX_HOST, PACKAGE, package_index
from tests.integration.serverproc import ServerProcess
from toolserver.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

METADATA = "169.254.169.254:80"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with package_index(tmp_path_factory.mktemp("index")) as where:
        yield where


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sandbox_image: str, index: str
) -> Iterator[ServerProcess]:
    env = {
        "TOOLSERVER_POOL_SIZE": "1",
        "TOOLSERVER_SANDBOX_IMAGE": sandbox_image,
        "TOOLSERVER_SANDBOX_EGRESS_ALLOW": index,
        "TOOLSERVER_SANDBOX_EGRESS_MAX": f"{index},{METADATA},pypi.org,*.pythonhosted.org",
        "TOOLSERVER_SANDBOX_EGRESS_MAX_CONNECTIONS": "8",
    }
    proc = ServerProcess(tmp_path_factory.mktemp("tshome"), env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(server: ServerProcess) -> dict[str, str]:
    with Client(server.url, server.admin_key) as admin:
        return {name: admin.keys.create(f"team-{name}", name).key for name in ("a", "b")}


def _http(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


@pytest.fixture(scope="module")
def a(server: ServerProcess, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with _http(server, keys["a"]) as client:
        yield client


@pytest.fixture(scope="module")
def b(server: ServerProcess, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with _http(server, keys["b"]) as client:
        yield client


@pytest.fixture(scope="module")
def session(a: httpx.Client, index: str) -> str:
    reply = a.post("/v1/sessions", json={"network": {"egress": [index, METADATA, "pypi.org"]}})
    assert reply.status_code == 201, reply.text
    assert reply.json()["network"] == {"egress": [index, METADATA, "pypi.org"]}
    return str(reply.json()["id"])


def _shell(client: httpx.Client, session: str, command: str, timeout_s: float = 120) -> str:
    reply = client.post(f"/v1/sessions/{session}/shell", json={"command": command, "timeout_s": timeout_s})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["output"])


def test_pip_installs_from_an_allowed_index_and_the_session_says_what_it_may_reach(
    a: httpx.Client, session: str, index: str
) -> None:
    out = _shell(
        a,
        session,
        f"pip install -q --no-cache-dir --target /workspace/lib --index-url http://{index}/simple"
        f" --trusted-host {INDEX_HOST} {PACKAGE} 2>&1 && PYTHONPATH=/workspace/lib python3 -c"
        f" 'import {PACKAGE}; print({PACKAGE}.VALUE)'",
    )
    assert out.strip().splitlines()[-1] == "42", out
    assert a.get(f"/v1/sessions/{session}").json()["network"] == {"egress": [index, METADATA, "pypi.org"]}


def test_the_metadata_address_other_ports_and_direct_connections_fail_and_are_journaled(
    a: httpx.Client, b: httpx.Client, session: str, index: str
) -> None:
    host, port = index.split(":")
    other = int(port) + 1 if int(port) < 65535 else int(port) - 1
    probe = (
        "import socket, sys, urllib.request\n"
        "for url in sys.argv[1:]:\n"
        "    try:\n"
        "        urllib.request.urlopen(url, timeout=20); print('reached', url)\n"
        "    except Exception as exc:\n"
        "        print('refused', getattr(exc, 'code', type(exc).__name__), url)\n"
        f"for target in [('{host}', {port}), ('169.254.169.254', 80), ('1.1.1.1', 443)]:\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=5).close(); print('reached', target)\n"
        "    except OSError as exc:\n"
        "        print('direct-failed', type(exc).__name__)\n"
        "try:\n"
        "    socket.getaddrinfo('pypi.org', 443); print('reached dns')\n"
        "except OSError:\n"
        "    print('dns-failed')\n"
    )
    assert a.put(f"/v1/sessions/{session}/files/probe.py", content=probe.encode()).status_code in (200, 201)
    out = _shell(
        a, session, f"python3 probe.py http://169.254.169.254/latest/meta-data/ http://{host}:{other}/hello"
    )
    assert "reached" not in out, out
    assert out.count("refused 403") == 2 and out.count("direct-failed") == 3 and "dns-failed" in out, out
    report = a.get(f"/v1/sessions/{session}/egress")
    assert report.status_code == 200, report.text
    body = report.json()
    verdicts = {(c["host"], c["port"]): (c["allowed"], c["reason"]) for c in body["connections"]}
    assert verdicts[("169.254.169.254", 80)][0] is False
    assert "not a public address" in verdicts[("169.254.169.254", 80)][1]
    assert verdicts[(host, other)] == (False, f"{host}:{other} is not on this sandbox's egress allow-list")
    assert verdicts[(host, int(port))][0] is True  # pip's requests, from the test before
    assert body["denied"] >= 2 and body["rules"][0] == index
    # Another tenant sees nothing of it.
    assert b.get(f"/v1/sessions/{session}/egress").status_code == 404
    # The denials are in the tenant's audit and in the server's metrics.
    deadline = time.monotonic() + 30
    while True:
        audit = a.get("/v1/audit", params={"limit": 50}).json()["calls"]
        denied = [c for c in audit if c["tool"] == "sandbox.egress" and c["session_id"] == session]
        if len(denied) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(denied) >= 2 and all(c["status"] == "denied" for c in denied)
    assert not [c for c in b.get("/v1/audit").json()["calls"] if c["tool"] == "sandbox.egress"]
    metrics = a.get("/metrics").text
    lines = [
        line for line in metrics.splitlines() if line.startswith("toolserver_sandbox_egress_connections{")
    ]
    assert any('verdict="denied"' in line and float(line.rsplit(" ", 1)[1]) >= 2 for line in lines), lines


def test_the_allow_list_is_held_to_the_operators_maximum_and_bridge_stays_shut(
    a: httpx.Client, index: str
) -> None:
    beyond = a.post("/v1/sessions", json={"network": {"egress": [index, "evil.example"]}})
    assert beyond.status_code == 422, beyond.text
    error = beyond.json()["error"]
    assert error["field"] == "network.egress[1]" and error["setting"] == "TOOLSERVER_SANDBOX_EGRESS_MAX"
    bad = a.post("/v1/sessions", json={"network": {"egress": ["http://pypi.org/simple"]}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "network.egress[0]", bad.text
    bridge = a.post("/v1/sessions", json={"network": "bridge"})
    assert bridge.status_code == 422 and "TOOLSERVER_ALLOW_OPEN_NETWORK" in bridge.json()["error"]["message"]
    nothing = a.post("/v1/sessions", json={"network": {"egress": []}})
    assert nothing.status_code == 422 and "TOOLSERVER_SANDBOX_EGRESS_DEFAULT" in nothing.text


def test_a_flood_of_proxy_connections_hits_the_cap_while_others_keep_answering(
    a: httpx.Client, b: httpx.Client, session: str
) -> None:
    other = b.post("/v1/sessions", json={})
    assert other.status_code == 201, other.text
    flood = (
        "import socket, time\n"
        "held = [socket.create_connection(('127.0.0.1', 3128), timeout=5) for _ in range(40)]\n"
        "time.sleep(2)\n"  # past the 0.5 s in which the proxy answers those over the cap
        "probe = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n"
        "probe.sendall(b'CONNECT pypi.org:443 HTTP/1.1\\r\\n\\r\\n')\n"
        "print(probe.recv(100).split(b'\\r\\n')[0].decode())\n"
        "time.sleep(3)\n"
    )
    assert a.put(f"/v1/sessions/{session}/files/flood.py", content=flood.encode()).status_code in (200, 201)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(_shell, a, session, "python3 flood.py")
        answers = []
        while not flooding.done():
            answers.append(_shell(b, other.json()["id"], "echo alive").strip())
            answers.append(str(b.get("/healthz").status_code))
        out = flooding.result()
    assert "429" in out, out
    assert answers and set(answers) == {"alive", "200"}, answers


def test_after_a_crash_the_session_is_re_attached_with_its_allow_list_and_proxy(
    server: ServerProcess, keys: dict[str, str], session: str, index: str
) -> None:
    server.crash()
    server.start()
    with _http(server, keys["a"]) as again:
        assert again.get(f"/v1/sessions/{session}").json()["network"] == {
            "egress": [index, METADATA, "pypi.org"]
        }
        get = "python3 -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=20).read().decode())'"
        assert _shell(again, session, f"{get} http://{index}/hello").strip() == "hello from the index"
        off = _shell(again, session, f"{get} http://pypi.org.evil.example/ 2>&1 | tail -1")
        assert "403" in off, off
        report = again.get(f"/v1/sessions/{session}/egress").json()
        assert report["rules"][0] == index and report["allowed"] >= 1 and report["denied"] >= 1
