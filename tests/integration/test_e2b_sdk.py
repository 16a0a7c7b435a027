"""The real `e2b` and `e2b-code-interpreter` SDKs against `toolserver up` (Ray Serve, real Docker).

One server serves the module; the SDKs find it only through E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Iterator

import docker
import pytest

from tests.integration.serverproc import ServerProcess
from toolserver.client import Client
from toolserver.e2b._keys import as_e2b_key

e2b = pytest.importorskip("e2b", reason="needs the e2b extra (pip install -e '.[e2b]')")
code_interpreter = pytest.importorskip("e2b_code_interpreter")

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image) -> Iterator[ServerProcess]:
    env = {"TOOLSERVER_POOL_SIZE": "1", "TOOLSERVER_SANDBOX_IMAGE": sandbox_image}
    proc = ServerProcess(tmp_path_factory.mktemp("tshome"), env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(server) -> dict[str, str]:
    with Client(server.url, server.admin_key) as admin:
        return {name: admin.keys.create(f"team-{name}", name).key for name in ("a", "b")}


@pytest.fixture(scope="module", autouse=True)
def e2b_env(server, keys) -> Iterator[None]:
    """What the README tells a user to set: both URLs at /e2b, the key in its e2b_ form."""
    saved = {name: os.environ.get(name) for name in ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY")}
    os.environ["E2B_API_URL"] = os.environ["E2B_SANDBOX_URL"] = f"{server.url}/e2b"
    os.environ["E2B_API_KEY"] = as_e2b_key(keys["a"])
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def sbx(e2b_env) -> Iterator[code_interpreter.Sandbox]:
    sandbox = code_interpreter.Sandbox.create(metadata={"team": "a"}, envs={"GREETING": "hello"}, timeout=600)
    yield sandbox
    sandbox.kill()


def test_create_info_list_and_timeout(sbx) -> None:
    assert sbx.sandbox_id.startswith("ses")
    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id and info.metadata == {"team": "a"}
    assert info.template_id == "code-interpreter-v1" and info.state.value == "running"
    listed = e2b.Sandbox.list(query=e2b.SandboxQuery(metadata={"team": "a"})).next_items()
    assert sbx.sandbox_id in [s.sandbox_id for s in listed]
    assert e2b.Sandbox.list(query=e2b.SandboxQuery(metadata={"team": "z"})).next_items() == []
    sbx.set_timeout(300)
    with pytest.raises(e2b.SandboxException, match="idle TTL"):
        sbx.set_timeout(7200)
    again = e2b.Sandbox.connect(sbx.sandbox_id)
    assert again.commands.run("echo $GREETING").stdout == "hello\n"


def test_run_code_keeps_state_streams_and_errors(sbx) -> None:
    assert sbx.run_code("x = 1").error is None
    assert sbx.run_code("x + 1").text == "2"
    lines: list[str] = []
    execution = sbx.run_code(
        "import time\nfor i in range(3):\n    print(i, flush=True)\n", on_stdout=lines.append
    )
    assert "".join(str(m) for m in lines) == "0\n1\n2\n" == "".join(execution.logs.stdout)
    failed = sbx.run_code("1 / 0")
    assert failed.error is not None and failed.error.name == "ZeroDivisionError"
    assert "ZeroDivisionError" in failed.error.traceback
    assert sbx.run_code("import os; os.environ['GREETING']").text == "'hello'"


def test_a_client_that_gives_up_interrupts_the_cell(sbx) -> None:
    with pytest.raises(e2b.TimeoutException):
        sbx.run_code("import time\ntime.sleep(300)\nfinished = True", timeout=2)
    # had the cell run on, this one would wait for it and see `finished`
    assert sbx.run_code("'finished' in dir()").text == "False"


def test_code_contexts_are_the_sessions_kernel(sbx) -> None:
    context = sbx.create_code_context()
    assert [c.id for c in sbx.list_code_contexts()] == [context.id]
    sbx.run_code("y = 5", context=context)
    assert sbx.run_code("y", context=context).text == "5"
    sbx.restart_code_context(context)
    assert sbx.run_code("'y' in dir()").text == "False"
    with pytest.raises(e2b.SandboxException, match="not supported"):
        sbx.run_code("1", language="r")


def test_display_image_comes_back_as_png(sbx) -> None:
    code = f"from IPython.display import Image, display\ndisplay(Image(data=__import__('base64').b64decode('{PNG_1PX}')))"
    execution = sbx.run_code(code)
    pngs = [r.png for r in execution.results if r.png]
    assert pngs and base64.b64decode(pngs[0]).startswith(b"\x89PNG")


def test_a_matplotlib_figure_comes_back_as_png(sbx) -> None:
    code = (
        "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "%matplotlib inline\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()"
    )
    execution = sbx.run_code(code)
    assert execution.error is None, execution.error
    pngs = [r.png for r in execution.results if r.png]
    assert pngs, execution.results
    assert base64.b64decode(pngs[0]).startswith(b"\x89PNG") and len(base64.b64decode(pngs[0])) > 1000


def test_commands_foreground_and_background(sbx) -> None:
    result = sbx.commands.run("echo hi")
    assert (result.stdout, result.exit_code) == ("hi\n", 0)
    seen: list[str] = []
    sbx.commands.run("for i in 1 2 3; do echo $i; sleep 0.2; done", on_stdout=seen.append)
    assert "".join(seen) == "1\n2\n3\n"
    with pytest.raises(e2b.CommandExitException) as failed:
        sbx.commands.run("echo oops >&2; exit 3")
    assert failed.value.exit_code == 3 and failed.value.stderr == "oops\n"
    done = sbx.commands.run("sleep 0.5; echo done", background=True)
    assert done.wait().stdout == "done\n"
    sleeper = sbx.commands.run("sleep 600", background=True)
    assert sleeper.pid in [p.pid for p in sbx.commands.list()]
    assert sleeper.kill() is True
    with pytest.raises(e2b.CommandExitException):
        sleeper.wait()
    assert sleeper.pid not in [p.pid for p in sbx.commands.list()]
    sbx.files.make_dir("sub")
    assert (
        sbx.commands.run("pwd; echo $X", cwd="/workspace/sub", envs={"X": "1"}).stdout
        == "/workspace/sub\n1\n"
    )
    later = sbx.commands.run("sleep 1; echo later", background=True)
    later.disconnect()
    assert sbx.commands.connect(later.pid).wait().exit_code == 0
    reader = sbx.commands.run("read line; echo got $line", background=True, stdin=True)
    sbx.commands.send_stdin(reader.pid, "typed\n")
    assert reader.wait().stdout == "got typed\n"


def test_files(sbx) -> None:
    info = sbx.files.write("notes/a.txt", "alpha")
    assert info.path == "/workspace/notes/a.txt"
    assert sbx.files.read("/workspace/notes/a.txt") == "alpha"
    assert sbx.files.read("notes/a.txt", format="bytes") == bytearray(b"alpha")
    assert [e.name for e in sbx.files.list("notes")] == ["a.txt"]
    assert sbx.files.exists("notes/a.txt") and not sbx.files.exists("notes/b.txt")
    assert sbx.files.get_info("notes/a.txt").size == 5
    assert sbx.files.make_dir("made/deep") is True and sbx.files.make_dir("made/deep") is False
    assert sbx.commands.run("cat notes/a.txt").stdout == "alpha"
    written = sbx.files.write_files(
        [{"path": "many/1.txt", "data": "one"}, {"path": "many/2.txt", "data": b"two"}]
    )
    assert [w.path for w in written] == ["/workspace/many/1.txt", "/workspace/many/2.txt"]
    sbx.files.write("many/3.bin", io.BytesIO(b"\x00\x01"))  # a file-like: the octet-stream upload
    assert sbx.files.read("many/3.bin", format="bytes") == bytearray(b"\x00\x01")
    assert b"".join(sbx.files.read("many/1.txt", format="stream")) == b"one"
    assert sorted(e.name for e in sbx.files.list("many")) == ["1.txt", "2.txt", "3.bin"]
    moved = sbx.files.rename("notes/a.txt", "notes/b.txt")
    assert moved.path == "/workspace/notes/b.txt" and sbx.files.read("notes/b.txt") == "alpha"
    sbx.files.rename("notes/b.txt", "notes/a.txt")
    sbx.files.remove("notes/a.txt")
    assert not sbx.files.exists("notes/a.txt")
    with pytest.raises(e2b.NotFoundException):
        sbx.files.read("notes/a.txt")
    with pytest.raises(e2b.InvalidArgumentException, match="outside the workspace"):
        sbx.files.read("/etc/passwd")


async def test_async_sandbox_runs_code(sbx) -> None:
    same = await code_interpreter.AsyncSandbox.connect(sbx.sandbox_id)
    await same.run_code("z = 3")
    assert (await same.run_code("z * 10")).text == "30"
    assert (await same.commands.run("echo async")).stdout == "async\n"


def test_another_tenant_and_a_bad_key_are_refused(sbx, keys) -> None:
    other = as_e2b_key(keys["b"])
    with pytest.raises(e2b.SandboxNotFoundException):
        e2b.Sandbox.connect(sbx.sandbox_id, api_key=other)
    assert sbx.sandbox_id not in [s.sandbox_id for s in e2b.Sandbox.list(api_key=other).next_items()]
    with pytest.raises(e2b.AuthenticationException):
        e2b.Sandbox.create(api_key="e2b_" + "00" * 20)
    with pytest.raises(e2b.AuthenticationException):
        e2b.Sandbox.list(api_key="e2b_0123").next_items()


def test_kill_removes_the_container(keys) -> None:
    sandbox = e2b.Sandbox.create()
    assert sandbox.commands.run("true").exit_code == 0
    engine = docker.from_env()

    def labelled() -> list[object]:
        # filtered by the engine: other tests' containers coming and going cannot race the listing
        return engine.containers.list(all=True, filters={"label": f"toolserver.session={sandbox.sandbox_id}"})

    assert labelled()
    assert sandbox.kill() is True
    deadline = time.monotonic() + 60
    while labelled() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not labelled()
    assert not sandbox.is_running()
    assert e2b.Sandbox.kill(sandbox.sandbox_id) is False


def test_pause_then_connect_resumes_with_the_files(keys) -> None:
    sandbox = e2b.Sandbox.create()
    sandbox.files.write("/workspace/kept.txt", "kept across the pause")
    assert sandbox.pause() is True
    assert e2b.Sandbox.pause(sandbox.sandbox_id) is False  # paused already
    assert e2b.Sandbox.get_info(sandbox.sandbox_id).state.value == "paused"
    paused = e2b.Sandbox.list(query=e2b.SandboxQuery(state=[e2b.SandboxState.PAUSED])).next_items()
    assert sandbox.sandbox_id in [s.sandbox_id for s in paused]
    with pytest.raises(e2b.SandboxNotFoundException):
        e2b.Sandbox.connect(sandbox.sandbox_id, api_key=as_e2b_key(keys["b"]))
    again = e2b.Sandbox.connect(sandbox.sandbox_id)
    assert again.files.read("/workspace/kept.txt") == "kept across the pause"
    assert again.get_info().state.value == "running"
    assert again.commands.run("cat /workspace/kept.txt").stdout == "kept across the pause"
    assert again.kill() is True


def test_smolagents_e2b_executor_runs_a_code_step() -> None:
    """smolagents' CodeAgent with executor_type="e2b" and a scripted model: one code step, its final answer."""
    smolagents = pytest.importorskip("smolagents")
    from smolagents.models import ChatMessage, Model

    class Scripted(Model):
        def generate(
            self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kw
        ):
            code = "import math\nprint('computing')\nfinal_answer(math.prod([6, 7]))"
            return ChatMessage(role="assistant", content=f"Thought: multiply.\n<code>\n{code}\n</code>")

    agent = smolagents.CodeAgent(
        tools=[], model=Scripted(), executor_type="e2b", max_steps=2, verbosity_level=0
    )
    try:
        assert agent.run("What is 6 times 7?") == 42
        step = agent.memory.steps[-1]
        assert "computing" in (step.observations or "")
    finally:
        agent.cleanup()
