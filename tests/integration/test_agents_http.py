"""Agent runs on the real server: a pause for a human survives a crash; a real OpenAI-compatible server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from tests.integration.serverproc import ServerProcess, free_port
from toolserver import api
from toolserver.client import ApiError, Client, RunEvent

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]


@pytest.fixture(scope="module")
def llm_port():
    """The fake LLM's port: the one loopback port the server may reach (its default egress refuses loopback)."""
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image, llm_port):
    env = {"TOOLSERVER_POOL_SIZE": "1", "TOOLSERVER_EGRESS_ALLOW": f"127.0.0.1:{llm_port}"}
    proc = ServerProcess(tmp_path_factory.mktemp("tshome-agents"), env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    with Client(server.url, server.admin_key) as c:
        yield c


@pytest.fixture(scope="module")
def fake_llm(llm_port):
    """An OpenAI-compatible chat-completions server on loopback: one tool call, then an answer."""
    app = FastAPI()
    seen: list[dict] = []

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict:
        body = await request.json()
        seen.append({**body, "authorization": request.headers.get("authorization")})
        tool_results = [m for m in body["messages"] if m["role"] == "tool"]
        if not tool_results:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "python", "arguments": '{"code": "print(6 * 7)"}'},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message = {
                "role": "assistant",
                "content": f"The sandbox said: {tool_results[-1]['content'][:200]}",
            }
            finish = "stop"
        return {
            "id": "cmpl-1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }

    port = llm_port
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", seen
    srv.should_exit = True
    thread.join(timeout=10)


def _wait(client: Client, run_id: str, status: str, timeout_s: float = 60) -> api.Run:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.runs.get(run_id)
        if run.status == status:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} is {run.status}, expected {status}")


def test_a_run_against_a_real_openai_compatible_server(client, fake_llm):
    base_url, seen = fake_llm
    client.agents.define(
        "remote-llm",
        tools=["python"],
        llm={"provider": "openai", "base_url": base_url, "model": "tiny", "api_key": "sk-test"},
    )
    session = client.session(keep=True).id
    run_id = client.runs.start("remote-llm", "compute six times seven", session).id
    run = _wait(client, run_id, "succeeded")
    assert "42" in run.result
    assert seen[0]["model"] == "tiny" and seen[0]["tools"][0]["function"]["name"] == "python"
    model_steps = [s for s in run.steps or [] if s.kind == "model"]
    assert model_steps[0].usage == {"prompt_tokens": 11, "completion_tokens": 7}
    assert client.agents.list()[0].llm["api_key"] == "***"


def test_llm_key_from_a_secret_and_endpoints_under_the_egress_policy(server, client, fake_llm):
    base_url, seen = fake_llm
    client.secrets.put("llm-key", "sk-from-secret")
    llm = {"provider": "openai", "base_url": base_url, "model": "keyed", "api_key_secret": "llm-key"}
    client.agents.define("keyed", tools=["python"], llm=llm)
    session = client.session(keep=True).id
    run = _wait(client, client.runs.start("keyed", "compute", session).id, "succeeded")
    assert "42" in run.result
    assert {s["authorization"] for s in seen if s["model"] == "keyed"} == {"Bearer sk-from-secret"}

    # The server's own environment is not a tenant's key store, unless the operator shares a variable.
    with pytest.raises(ApiError) as refused:
        client.agents.define(
            "thief", llm={**llm, "api_key_secret": None, "api_key_env": "TOOLSERVER_API_KEY"}
        )
    assert refused.value.status_code == 422 and refused.value.field == "llm.api_key_env"
    with pytest.raises(ApiError) as metadata:
        client.agents.define("meta", llm={**llm, "base_url": "http://169.254.169.254/v1"})
    assert metadata.value.status_code == 422 and metadata.value.field == "llm.base_url"

    with pytest.raises(ApiError) as inward:
        client.agents.define("inward", llm={**llm, "base_url": server.url + "/v1"})
    assert inward.value.status_code == 422 and "TOOLSERVER_EGRESS_ALLOW" in str(inward.value)
    # A name is checked when the run connects: loopback beyond the one allowed port fails the run, with the reason.
    port = httpx.URL(server.url).port
    client.agents.define("inward", llm={**llm, "base_url": f"http://localhost:{port}/v1"})
    failed = _wait(client, client.runs.start("inward", "compute", session).id, "failed")
    assert "TOOLSERVER_EGRESS_ALLOW" in failed.error
    client.agents.define("nokey", llm={**llm, "api_key_secret": "never-set"})
    missing = _wait(client, client.runs.start("nokey", "compute", session).id, "failed")
    assert "never-set" in missing.error
    client.attach(session).delete()


def test_cli_stores_the_key_from_the_callers_environment_as_a_secret(server, client):
    env = {
        **os.environ,
        "TOOLSERVER_URL": server.url,
        "TOOLSERVER_API_KEY": server.admin_key,
        "MY_LLM_KEY": "sk-from-cli",
    }
    argv = ["agent", "create", "--name", "clikey", "--base-url", "https://llm.example/v1", "--model", "m"]
    done = subprocess.run(
        [sys.executable, "-m", "toolserver.cli", *argv, "--api-key-env", "MY_LLM_KEY"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MY_LLM_KEY" in client.secrets.list()
    assert client.agents.get("clikey").llm["api_key_secret"] == "MY_LLM_KEY"
    unset = subprocess.run(
        [sys.executable, "-m", "toolserver.cli", *argv, "--api-key-env", "NOT_SET_ANYWHERE"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unset.returncode != 0 and "NOT_SET_ANYWHERE is not set here" in unset.stderr


def test_waiting_run_survives_a_crash_and_resumes_on_answer(server, client):
    replies = [
        {"tool_calls": [{"name": "python", "arguments": {"code": "progress = 'half done'"}}]},
        {"tool_calls": [{"name": "ask_human", "arguments": {"question": "Continue with the second half?"}}]},
        {"tool_calls": [{"name": "python", "arguments": {"code": "progress + ' then finished'"}}]},
        "Both halves are done.",
    ]
    client.agents.define("patient", tools=["python"], llm={"provider": "scripted", "replies": replies})
    session = client.session(keep=True).id
    run_id = client.runs.start("patient", "do the work in two halves", session).id
    _wait(client, run_id, "waiting_human")
    events = [seen.event for seen in _take(client.runs.events(run_id), until="waiting_human")]
    assert "step" in events

    server.crash()
    server.start()
    with Client(server.url, server.admin_key) as again:
        pending = [r for r in again.humans.list("pending") if r.run_id == run_id]
        assert [r.question for r in pending] == ["Continue with the second half?"]
        again.humans.answer(pending[0].id, "yes")
        run = _wait(again, run_id, "succeeded")
        assert run.result == "Both halves are done."
        # the kernel state from before the crash was still there for the resumed run
        last_tool = [s for s in run.steps or [] if s.kind == "tool"][-1]
        assert "half done then finished" in last_tool.content["content"]


def test_demo_command_end_to_end(server):
    env = {**os.environ, "TOOLSERVER_URL": server.url, "TOOLSERVER_API_KEY": server.admin_key}
    done = subprocess.run(
        [sys.executable, "-m", "toolserver.cli", "demo", "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout and "report.txt: mean=3.875 median=3.5" in done.stdout


def _take(events: Iterator[RunEvent], until: str) -> Iterator[RunEvent]:
    for seen in events:
        yield seen
        if seen.event == "status" and seen.status == until:
            return


def test_agent_run_asks_at_the_terminal(server, client):
    """`toolserver agent run` on a real terminal: the question appears, the typed answer resumes the run."""
    import pty
    import select

    replies = [
        {"tool_calls": [{"name": "ask_human", "arguments": {"question": "Which colour?"}}]},
        "You chose the colour.",
    ]
    client.agents.define("asker", tools=[], llm={"provider": "scripted", "replies": replies})
    env = {**os.environ, "TOOLSERVER_URL": server.url, "TOOLSERVER_API_KEY": server.admin_key}
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolserver.cli", "agent", "run", "--agent", "asker", "pick a colour"],
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
    )
    os.close(secondary)
    seen = b""
    answered = False
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"> " in seen and b"Which colour?" in seen:
                os.write(primary, b"blue\n")
                answered = True
            if proc.poll() is not None and not ready:
                break
        assert proc.wait(timeout=30) == 0, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    text = seen.decode(errors="replace")
    assert "the agent asks: Which colour?" in text
    assert "human answered: blue" in text and "succeeded: You chose the colour." in text
