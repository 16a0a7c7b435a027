"""Background processes for real: `toolserver up` on Ray Serve, real HTTP, real Docker.

One server serves the module; the last test crashes and restarts it to check that processes outlive it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.serverproc import ServerProcess
from toolserver.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

CAP = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image) -> Iterator[ServerProcess]:
    env = {
        "TOOLSERVER_POOL_SIZE": "1",
        "TOOLSERVER_SANDBOX_IMAGE": sandbox_image,
        "TOOLSERVER_MAX_PROCESSES_PER_SESSION": str(CAP),
        "TOOLSERVER_PROCESS_OUTPUT_KB": "64",
    }
    proc = ServerProcess(tmp_path_factory.mktemp("tshome"), env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(server) -> dict[str, str]:
    with Client(server.url, server.admin_key) as admin:
        return {name: admin.keys.create(f"team-{name}", name).key for name in ("a", "b")}


def http(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="module")
def a(server, keys) -> Iterator[httpx.Client]:
    with http(server, keys["a"]) as client:
        yield client


@pytest.fixture(scope="module")
def session(a) -> str:
    reply = a.post("/v1/sessions", json={})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def start(a: httpx.Client, session: str, command: str, **extra: object) -> dict:
    reply = a.post(f"/v1/sessions/{session}/processes", json={"command": command, **extra})
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def follow(a: httpx.Client, session: str, pid: int, offset: int = 0) -> list[tuple[str, dict]]:
    """Every event of `output?follow=true` until the stream ends."""
    events: list[tuple[str, dict]] = []
    url = f"/v1/sessions/{session}/processes/{pid}/output"
    with a.stream("GET", url, params={"follow": "true", "offset": offset}, timeout=120) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_output_is_streamed_complete_and_replayable(a, session) -> None:
    proc = start(a, session, "for i in 1 2 3; do echo $i; sleep 1; done; echo bye >&2; exit 4")
    assert proc["status"] == "running" and proc["exit_code"] is None
    events = follow(a, session, proc["pid"])
    names = [n for n, _ in events]
    assert names[-1] == "exit" and "stderr" in names
    text = "".join(d["data"] for n, d in events if n in ("stdout", "stderr"))
    assert text == "1\n2\n3\nbye\n"
    first_stdout = names.index("stdout")
    assert first_stdout < names.index("stderr") < names.index("exit")  # "1" came before the end
    assert events[-1][1]["exit_code"] == 4 and events[-1][1]["status"] == "exited"
    replay = a.get(f"/v1/sessions/{session}/processes/{proc['pid']}/output", params={"offset": 4})
    assert replay.status_code == 200
    body = replay.json()
    assert "".join(c["data"] for c in body["chunks"]) == "3\nbye\n" and body["done"] is True
    listed = a.get(f"/v1/sessions/{session}/processes").json()["processes"]
    assert proc["pid"] in [p["pid"] for p in listed]


def test_stdin_env_cwd_and_signal(a, session) -> None:
    assert a.post(f"/v1/sessions/{session}/shell", json={"command": "mkdir -p sub"}).status_code == 200
    proc = start(a, session, 'pwd; echo "$WHO"; cat', cwd="sub", env={"WHO": "me"}, stdin=True)
    url = f"/v1/sessions/{session}/processes/{proc['pid']}"
    written = a.post(url + "/stdin", json={"data": "typed\n", "eof": True})
    assert written.status_code == 200 and written.json()["written"] == 6
    text = "".join(d["data"] for n, d in follow(a, session, proc["pid"]) if n == "stdout")
    assert text == "/workspace/sub\nme\ntyped\n"
    sleeper = start(a, session, "sleep 600")
    stopped = a.post(f"/v1/sessions/{session}/processes/{sleeper['pid']}/signal", json={"signal": "TERM"})
    assert stopped.status_code == 200
    end = follow(a, session, sleeper["pid"])[-1]
    assert end[0] == "exit" and end[1]["signal"] == "TERM" and end[1]["exit_code"] == 143


def test_limits_hold(a, session) -> None:
    proc = start(a, session, "cat", stdin=True)
    url = f"/v1/sessions/{session}/processes/{proc['pid']}"
    too_big = a.post(url + "/stdin", json={"data": "x" * ((1 << 20) + 1)})
    assert too_big.status_code == 413, too_big.text
    bad_signal = a.post(url + "/signal", json={"signal": "SEGV"})
    assert bad_signal.status_code == 422
    assert a.get(f"/v1/sessions/{session}/processes/4194304").status_code == 404
    assert a.get(f"/v1/sessions/{session}/processes/0").status_code == 422
    running = [
        p for p in a.get(f"/v1/sessions/{session}/processes").json()["processes"] if p["status"] == "running"
    ]
    sleepers = [start(a, session, "sleep 600") for _ in range(CAP - len(running))]
    over = a.post(f"/v1/sessions/{session}/processes", json={"command": "sleep 600"})
    assert over.status_code == 429 and over.json()["error"]["type"] == "process_limit"
    for p in [*running, *sleepers]:
        a.post(f"/v1/sessions/{session}/processes/{p['pid']}/signal", json={"signal": "KILL"})
    # Output past the ring buffer (64 KiB here) keeps the newest bytes and says how many were dropped.
    noisy = start(a, session, "head -c 300000 /dev/zero | tr '\\0' z; echo END")
    url = f"/v1/sessions/{session}/processes/{noisy['pid']}/output"
    while not a.get(url, params={"offset": 1 << 40, "wait_s": 20}).json()["done"]:
        pass  # waits for the end, reading nothing: what follows sees only what the buffer kept
    events = follow(a, session, noisy["pid"])
    text = "".join(d["data"] for n, d in events if n == "stdout")
    assert text.endswith("zEND\n") and len(text) <= 64 * 1024 + 4
    assert events[-1][1]["next_offset"] == 300004


def test_another_tenant_sees_nothing(server, keys, a, session) -> None:
    proc = start(a, session, "sleep 600")
    with http(server, keys["b"]) as b:
        base = f"/v1/sessions/{session}/processes"
        assert b.get(base).status_code == 404
        assert b.post(base, json={"command": "id"}).status_code == 404
        assert b.get(f"{base}/{proc['pid']}").status_code == 404
        assert b.get(f"{base}/{proc['pid']}/output", params={"follow": "true"}).status_code == 404
        assert b.post(f"{base}/{proc['pid']}/signal", json={"signal": "KILL"}).status_code == 404
        assert b.post(f"{base}/{proc['pid']}/stdin", json={"data": "x"}).status_code == 404
    assert a.get(f"/v1/sessions/{session}/processes/{proc['pid']}").json()["status"] == "running"
    a.post(f"/v1/sessions/{session}/processes/{proc['pid']}/signal", json={"signal": "KILL"})


def test_the_sandbox_still_has_no_network(a, session) -> None:
    probe = "python3 -c \"import socket; s=socket.socket(); s.settimeout(2); s.connect(('1.1.1.1', 80))\""
    proc = start(a, session, f"{probe} && echo reached || echo unreachable")
    text = "".join(d["data"] for n, d in follow(a, session, proc["pid"]) if n == "stdout")
    assert text.strip().endswith("unreachable")


def streamed(
    a: httpx.Client, session: str, route: str, body: dict, on_event: object = None, stop_after: int = 0
) -> list[tuple[str, dict]]:
    """The events of a streamed call; `on_event(name, data)` sees each; `stop_after` > 0 hangs up after that many."""
    events: list[tuple[str, dict]] = []
    with a.stream(
        "POST", f"/v1/sessions/{session}/{route}", json={**body, "stream": True}, timeout=120
    ) as reply:
        assert reply.status_code == 200, reply.read()
        name = None
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[len("data: ") :])))
                if callable(on_event):
                    on_event(*events[-1])
                if stop_after and len(events) >= stop_after:
                    break
    return events


def test_a_streamed_command_shows_output_before_it_ends(a, session) -> None:
    def on_event(name: str, data: dict) -> None:
        if name == "stdout" and "1" in data["data"]:  # the command waits for this file: streaming is proven
            assert a.put(f"/v1/sessions/{session}/files/go", content=b"").status_code == 200

    command = "rm -f go; echo 1; until [ -e go ]; do sleep 0.1; done; echo 2"
    events = streamed(a, session, "shell", {"command": command, "timeout_s": 60}, on_event)
    names = [n for n, _ in events]
    assert names[-1] == "result" and set(names[:-1]) == {"stdout"}
    assert "".join(d["data"] for n, d in events if n == "stdout") == "1\n2\n"
    result = events[-1][1]
    assert result["exit_code"] == 0 and result["output"] == "1\n2\n" and result["timed_out"] is False


def test_a_streamed_cell_shows_prints_and_displays_as_they_come(a, session) -> None:
    def on_event(name: str, data: dict) -> None:
        if name == "stdout" and "first" in data["data"]:
            assert a.put(f"/v1/sessions/{session}/files/go-cell", content=b"").status_code == 200

    code = (
        "import os, time\nfrom IPython.display import HTML, display\n"
        "print('first', flush=True)\n"
        "while not os.path.exists('go-cell'): time.sleep(0.05)\n"
        "display(HTML('<b>hi</b>'))\nprint('second')\n6 * 7"
    )
    events = streamed(a, session, "python", {"code": code, "timeout_s": 60}, on_event)
    names = [n for n, _ in events]
    assert names[-1] == "result" and "display" in names
    assert names.index("stdout") < names.index("display")
    result = events[-1][1]
    assert result["status"] == "ok" and result["result"] == "42" and result["stdout"] == "first\nsecond\n"
    assert {"mime": "text/html", "data": "<b>hi</b>"} in [d for n, d in events if n == "display"]


def test_the_output_cap_holds_over_the_stream(a, session) -> None:
    events = streamed(a, session, "shell", {"command": "head -c 300000 /dev/zero | tr '\\0' x"})
    text = "".join(d["data"] for n, d in events if n == "stdout")
    assert len(text.encode()) <= 64 * 1024 and "truncated" in [n for n, _ in events]
    assert events[-1][0] == "result" and events[-1][1]["truncated"] is True


def test_a_disconnect_leaves_the_command_running_unless_asked(a, session) -> None:
    a.post(f"/v1/sessions/{session}/shell", json={"command": "rm -f go2 finished.txt"})
    command = "echo begun; until [ -e go2 ]; do sleep 0.1; done; echo done > finished.txt"
    assert (
        streamed(a, session, "shell", {"command": command, "timeout_s": 120}, stop_after=1)[0][0] == "stdout"
    )
    assert a.put(f"/v1/sessions/{session}/files/go2", content=b"").status_code == 200
    after = a.post(f"/v1/sessions/{session}/shell", json={"command": "cat finished.txt", "timeout_s": 60})
    assert after.json()["output"] == "done\n"  # it ran on to its end after the client went
    body = {"command": "echo begun; sleep 600", "timeout_s": 900, "cancel_on_disconnect": True}
    assert streamed(a, session, "shell", body, stop_after=1)[0][0] == "stdout"
    again = a.post(f"/v1/sessions/{session}/shell", json={"command": "echo free", "timeout_s": 120})
    assert again.json()["output"] == "free\n"  # the sleep was interrupted: the shell is free again


def test_another_tenant_cannot_stream_in_the_session(server, keys, session) -> None:
    with http(server, keys["b"]) as b:
        reply = b.post(f"/v1/sessions/{session}/shell", json={"command": "id", "stream": True})
        assert reply.status_code == 404
        reply = b.post(f"/v1/sessions/{session}/python", json={"code": "1", "stream": True})
        assert reply.status_code == 404


def test_the_sdk_streams_and_drives_processes(server, keys, session) -> None:
    with Client(server.url, keys["a"]) as ts:
        s = ts.attach(session)
        seen: list[str] = []

        def on_stdout(text: str) -> None:
            seen.append(text)
            if "one" in "".join(seen):
                s.files.write("go-sdk", b"")  # the command waits for it: on_stdout ran while it was running

        result = s.shell(
            "rm -f go-sdk; echo one; until [ -e go-sdk ]; do sleep 0.1; done; echo two", 60, on_stdout
        )
        assert "".join(seen) == "one\ntwo\n" and result.exit_code == 0 and result.output == "one\ntwo\n"
        events = list(s.python_events("print('a'); 1 + 1"))
        assert [e.event for e in events] == ["stdout", "result"] and events[-1].data["result"] == "2"
        printed: list[str] = []
        assert s.python("print('p')", on_stdout=printed.append).stdout == "p\n" and printed == ["p\n"]
        proc = s.processes.start("echo out; echo err >&2; exit 2")
        got: dict[str, str] = {"out": "", "err": ""}
        end = proc.wait(
            on_stdout=lambda t: got.update(out=got["out"] + t),
            on_stderr=lambda t: got.update(err=got["err"] + t),
        )
        assert end.exit_code == 2 and got == {"out": "out\n", "err": "err\n"}
        whole = "".join(c.data for c in proc.output(0).chunks)  # the two pipes are read as they come
        assert sorted(whole.splitlines()) == ["err", "out"]
        assert "".join(c.data for c in proc.output(4).chunks) == whole[4:]  # replayed from an offset
        sleeper = s.processes.start("sleep 600")
        assert sleeper.pid in [p.pid for p in s.processes.list()]
        assert sleeper.kill().pid == sleeper.pid
        assert [e.event for e in sleeper.follow()][-1] == "exit" and sleeper.refresh().signal == "KILL"


async def test_the_async_sdk_streams_and_drives_processes(server, keys, session) -> None:
    from toolserver.client import AsyncClient

    async with AsyncClient(server.url, keys["a"]) as ts:
        s = await ts.attach(session)
        seen: list[str] = []
        result = await s.shell("echo x; echo y", 30, on_stdout=seen.append)
        assert "".join(seen) == "x\ny\n" and result.exit_code == 0
        proc = await s.processes.start("cat", stdin=True)
        assert await proc.send_stdin("fed\n", eof=True) == 4
        assert (await proc.wait()).exit_code == 0
        assert "".join(c.data for c in (await proc.output()).chunks) == "fed\n"


def test_cli_exec_follow(server, keys, session) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "TOOLSERVER_URL": server.url, "TOOLSERVER_API_KEY": keys["a"]}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolserver.cli",
            "sessions",
            "exec",
            session,
            "echo streamed; exit 3",
            "--follow",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout == "streamed\n" and done.returncode == 3, done.stderr


def test_processes_survive_a_server_restart(server, keys, a, session) -> None:
    proc = start(a, session, "for i in $(seq 1 40); do echo tick $i; sleep 0.5; done")
    seen = a.get(f"/v1/sessions/{session}/processes/{proc['pid']}/output", params={"wait_s": 10}).json()
    assert seen["chunks"] and seen["chunks"][0]["data"].startswith("tick 1")
    server.crash()
    server.start()
    with http(server, keys["a"]) as again:
        info = again.get(f"/v1/sessions/{session}/processes/{proc['pid']}")
        assert info.status_code == 200, info.text
        events = follow(again, session, proc["pid"], offset=seen["next_offset"])
    text = "".join(d["data"] for n, d in events if n == "stdout")
    before = "".join(c["data"] for c in seen["chunks"])
    assert (before + text).splitlines() == [f"tick {i}" for i in range(1, 41)]
