"""The console in a real browser: the real server, a `toolserver ui` process, headless Chromium (Debian's).

Screenshots of each page go to TOOLSERVER_CONSOLE_SHOTS when set (docs/console holds the committed ones),
else to a temporary artifacts directory whose path the test prints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.serverproc import ServerProcess, free_port
from toolserver.client import Client, Request

pytestmark = [pytest.mark.integration, pytest.mark.ray]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (scripts/setup.sh installs it): the console tests need a real browser",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402  (after the skip)

TOPIC = "Should we ship the 2.0 release on Friday?"
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 2, 5])\nplt.title('from the sandbox')\nplt.show()"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sandbox_image: Any) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("tshome-console"), env={"TOOLSERVER_POOL_SIZE": "0"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(server: ServerProcess) -> dict[str, str]:
    with Client(server.url, server.admin_key) as admin:
        return {
            "team": admin.keys.create("team-console", "console user").key,
            "other": admin.keys.create("team-elsewhere", "another tenant").key,
        }


@pytest.fixture(scope="module")
def team(server: ServerProcess, keys: dict[str, str]) -> Iterator[Client]:
    with Client(server.url, keys["team"]) as client:
        yield client


@pytest.fixture(scope="module")
def console(
    server: ServerProcess, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`toolserver ui` with the team's key (from TOOLSERVER_API_KEY, as a user would start it)."""
    home = tmp_path_factory.mktemp("console-home")  # no admin key to find there: only the team's key
    port = free_port()
    log = home / "ui.log"
    env = {**os.environ, "TOOLSERVER_HOME": str(home), "TOOLSERVER_API_KEY": keys["team"]}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "toolserver.cli", "ui", "--url", server.url, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"toolserver ui exited:\n{log.read_text()}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"toolserver ui did not answer:\n{log.read_text()}"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("TOOLSERVER_CONSOLE_SHOTS") or tmp_path_factory.mktemp("console-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots in {folder}")
    return folder


@pytest.fixture
def open_console(browser: Browser, console: str) -> Iterator[Callable[[], Page]]:
    """A fresh browser tab on the console; requests anywhere but loopback are refused (and fail the test)."""
    contexts = []
    refused: list[str] = []

    def only_loopback(route: Any) -> None:
        host = httpx.URL(route.request.url).host
        if route.request.url.startswith("data:") or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.route("**/*", only_loopback)
        contexts.append(context)
        page = context.new_page()
        page.goto(console)
        expect(page.get_by_role("tab", name="Waiting for you")).to_be_visible(timeout=30_000)
        return page

    yield make
    for context in contexts:
        context.close()
    assert refused == [], f"the console asked for something off this machine: {refused}"


def _pick(page: Page, dropdown: str, option: str) -> None:
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option).first.click()


def _wait_status(client: Client, run_id: str, status: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.runs.get(run_id)
        if run.status == status or time.monotonic() > deadline:
            return run
        time.sleep(0.3)


def test_a_question_appears_live_and_the_answer_resumes_the_run(open_console, team, shots):
    replies = [
        {
            "tool_calls": [
                {"name": "ask_human", "arguments": {"question": "Which colour should the button be?"}}
            ]
        },
        "The button will be blue.",
    ]
    team.agents.define("asker", tools=[], llm={"provider": "scripted", "replies": replies})
    page = open_console()
    expect(page.locator("#waiting-status")).to_contain_text("Nobody is waiting", timeout=20_000)

    run = team.runs.start("asker", "Choose the button's colour.")  # asked after the page is open: no reload
    cards = page.locator("#waiting-cards")
    expect(cards).to_contain_text("Which colour should the button be?", timeout=30_000)
    expect(cards).to_contain_text("asker asks")
    expect(page.locator("#waiting-status")).to_contain_text("1 waiting for you")
    page.screenshot(path=str(shots / "waiting.png"), full_page=True)

    (request,) = [r for r in team.humans.list() if r.run_id == run.id]
    _pick(page, "waiting-question", f"[{request.id}]")
    page.locator("#waiting-answer textarea").fill("blue")
    page.locator("#waiting-send").click()

    finished = _wait_status(team, run.id, "succeeded")
    assert finished.status == "succeeded", finished
    assert finished.result == "The button will be blue."
    assert team.humans.get(request.id).answer == "blue"
    expect(page.locator("#waiting-status")).to_contain_text("Nobody is waiting", timeout=20_000)


def test_a_run_streams_its_steps_shows_its_plot_and_is_answered_in_place(open_console, team, shots):
    replies = [
        {"tool_calls": [{"name": "python", "arguments": {"code": PLOT}}]},
        {"tool_calls": [{"name": "ask_human", "arguments": {"question": "Is the plot good enough?"}}]},
        "Plot approved.",
    ]
    team.agents.define(
        "plotter", tools=["python", "ask_human"], llm={"provider": "scripted", "replies": replies}
    )
    page = open_console()
    page.get_by_role("tab", name="Runs").click()
    page.get_by_role("button", name="Refresh lists").click()
    _pick(page, "runs-agent", "plotter")
    page.locator("#runs-task textarea").fill("Plot four numbers and ask me about it.")
    page.locator("#runs-start").click()

    steps = page.locator("#runs-steps")
    expect(steps.locator("img.ts-img")).to_be_visible(timeout=60_000)  # the cell's PNG, as an image
    expect(steps).to_contain_text("calls python(")
    expect(page.locator("#runs-question")).to_contain_text("Is the plot good enough?", timeout=30_000)
    image = steps.locator("img.ts-img").first
    assert image.evaluate("img => img.naturalWidth") > 100  # a real decoded picture, not a broken icon
    page.screenshot(path=str(shots / "runs.png"), full_page=True)

    run_id = _latest_run(team, "plotter")
    page.locator("#runs-answer textarea").fill("Yes, ship it.")
    page.locator("#runs-send").click()
    expect(steps.locator('[data-status="succeeded"]')).to_be_visible(timeout=60_000)
    expect(steps).to_contain_text("Plot approved.")
    finished = team.runs.get(run_id)
    assert finished.status == "succeeded" and finished.result == "Plot approved."
    assert [s.kind for s in finished.steps or []].count("human") == 2  # the question and its answer


def _latest_run(client: Client, agent: str) -> str:
    runs = sorted((r for r in client.runs.list() if r.agent == agent), key=lambda r: r.created_at)
    return runs[-1].id


def test_the_chat_room_streams_messages_and_a_typed_message_reaches_the_inbox(open_console, team, shots):
    from agent_core.environment.examples import CHAT_ROOM_TRANSCRIPT

    page = open_console()
    page.get_by_role("tab", name="Chat room").click()
    page.locator("#chat-new-name textarea").fill("room-ui")
    page.locator("#chat-create").click()
    expect(page.locator("#chat-agents")).to_contain_text("moderator", timeout=150_000)  # three Ray actors

    _pick(page, "chat-to", "god")
    page.locator("#chat-text textarea").fill(TOPIC)
    page.locator("#chat-send").click()
    expect(page.locator("#chat-messages")).to_contain_text(TOPIC, timeout=20_000)
    room = team.send(Request("GET", "/v1/environments/room-ui", Any))
    assert room["pending"]["god"] == 1  # the typed message waits in the moderator's inbox
    assert [(m["sender"], m["delivered_to"]) for m in room["history"]] == [("user", ["god"])]

    page.locator("#chat-run").click()
    messages = page.locator("#chat-messages")
    expect(messages).to_contain_text("END. Decision: we ship 2.0 on Monday morning", timeout=60_000)
    expect(messages).to_contain_text("god · moderator")
    expect(messages).to_contain_text("bob · engineer")
    expect(page.locator("#chat-center")).to_contain_text("closed", timeout=10_000)
    page.screenshot(path=str(shots / "chat-room.png"), full_page=True)
    history = team.environments.get("room-ui").history
    assert [(m.sender, tuple(m.delivered_to), m.content) for m in history] == CHAT_ROOM_TRANSCRIPT

    page.locator("#chat-create").click()  # the name is taken: the server's own words, not a traceback
    expect(page.get_by_text("environment 'room-ui' exists")).to_be_visible(timeout=20_000)


def test_sessions_shell_python_plot_and_files(open_console, team, shots, tmp_path):
    page = open_console()
    page.get_by_role("tab", name="Sessions").click()
    page.locator("#sessions-new").click()
    expect(page.locator("#sessions-pick input")).to_have_value(re.compile(r"^ses_"), timeout=60_000)
    picked = page.locator("#sessions-pick input").input_value()  # "ses_... (running, image)"
    session = team.attach(picked.split()[0])

    page.get_by_role("tab", name="Python").click()
    editor = page.locator("#python-code .cm-content")
    editor.click()
    editor.fill(PLOT)
    page.locator("#python-run").click()
    image = page.locator("#python-cells img.ts-img")
    expect(image).to_be_visible(timeout=60_000)
    assert image.evaluate("img => img.naturalWidth") > 100
    page.screenshot(path=str(shots / "sessions.png"), full_page=True)

    editor.fill(
        "import pandas as pd\nfrom IPython.display import HTML, display\n"
        "display(HTML(\"<b id='injected'>x</b><img src=x onerror='window.pwned=1'>\"))\n"
        "pd.DataFrame({'city': ['Lyon', 'Oslo'], 'rain_mm': [830, 760]})"
    )
    page.locator("#python-run").click()
    expect(page.locator("#python-cells table.ts-table")).to_contain_text("Oslo", timeout=60_000)  # a table
    page.wait_for_timeout(500)
    assert page.locator("#injected").count() == 0  # a cell's markup is shown as text, never run
    assert page.evaluate("window.pwned") is None

    page.get_by_role("tab", name="Shell").click()
    page.locator("#shell-command textarea").fill(
        "mkdir -p notes && cd notes && echo written-in-the-page > a.txt && pwd"
    )
    page.locator("#shell-run").click()
    expect(page.locator("#shell-log")).to_contain_text("/workspace/notes", timeout=30_000)
    assert team.attach(session.id).files.read_text("notes/a.txt").strip() == "written-in-the-page"

    page.get_by_role("tab", name="Files").click()
    upload = tmp_path / "uploaded.csv"
    upload.write_text("a,b\n1,2\n")
    page.locator("#files-upload input[type=file]").set_input_files(str(upload))
    expect(page.locator("#files-table")).to_contain_text("uploaded.csv", timeout=30_000)
    assert team.attach(session.id).files.read_text("uploaded.csv") == "a,b\n1,2\n"
    page.locator("#files-path textarea").fill("notes/a.txt")
    page.locator("#files-view").click()
    expect(page.locator("#files-text")).to_contain_text("written-in-the-page", timeout=20_000)
    team.attach(session.id).delete()


def test_another_tenants_key_sees_none_of_it(open_console, team, keys, shots):
    secret = "A question only team-console may read?"
    replies = [{"tool_calls": [{"name": "ask_human", "arguments": {"question": secret}}]}, "ok"]
    team.agents.define("secretive", tools=[], llm={"provider": "scripted", "replies": replies})
    run = team.runs.start("secretive", "Ask your question.")
    held = team.session(keep=True)
    try:
        assert _wait_status(team, run.id, "waiting_human").status == "waiting_human"
        with Client(team.url, keys["other"]) as other:
            assert other.runs.list() == [] and other.sessions() == [] and other.humans.list() == []

        page = open_console()
        expect(page.locator("#waiting-cards")).to_contain_text(secret, timeout=30_000)  # the console's key
        page.get_by_role("tab", name="Sessions").click()
        page.get_by_role("button", name="Refresh", exact=True).click()
        page.locator("#sessions-pick input").click()
        expect(page.get_by_role("option", name=held.id)).to_have_count(1)  # the lists do show the team's
        page.keyboard.press("Escape")
        page.get_by_role("tab", name="Waiting for you").click()
        page.locator("#key-box input").fill("tsk_not_a_key")
        page.locator("#key-use").click()
        expect(page.locator("#key-status")).to_contain_text("401", timeout=20_000)  # the server's answer

        page.locator("#key-box input").fill(keys["other"])
        page.locator("#key-use").click()
        expect(page.locator("#key-status")).to_contain_text("Key accepted", timeout=20_000)
        expect(page.locator("#waiting-status")).to_contain_text("Nobody is waiting", timeout=20_000)
        expect(page.locator("#waiting-cards")).not_to_contain_text(secret)
        for tab, refresh, dropdown in (
            ("Runs", "Refresh lists", "runs-pick"),
            ("Chat room", "Refresh", "chat-room-pick"),
            ("Sessions", "Refresh", "sessions-pick"),
        ):
            page.get_by_role("tab", name=tab).click()
            page.get_by_role("button", name=refresh, exact=True).click()
            page.wait_for_timeout(1000)
            page.locator(f"#{dropdown} input").click()
            expect(page.get_by_role("option")).to_have_count(0)
            page.keyboard.press("Escape")
        page.get_by_role("tab", name="Waiting for you").click()
        page.screenshot(path=str(shots / "another-tenant.png"), full_page=True)
    finally:
        held.delete()
        for request in team.humans.list():
            team.humans.answer(request.id, "done")
