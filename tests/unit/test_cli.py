"""The CLI without a server: help texts and the offline environment examples."""

from __future__ import annotations

import subprocess
import sys


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toolserver.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_command():
    done = _cli("--help")
    assert done.returncode == 0
    for command in (
        "up",
        "down",
        "status",
        "image",
        "keys",
        "tools",
        "sessions",
        "agent",
        "human",
        "demo",
        "env",
    ):
        assert command in done.stdout


def test_offline_chat_room_runs_in_the_terminal():
    done = _cli("env", "example", "chat-room")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[1] user:") and "god: END." in lines[-1]
    assert sum(" alice: " in line for line in lines) == 2 and sum(" bob: " in line for line in lines) == 1


def test_no_server_is_a_clear_error_not_a_traceback(tmp_path):
    env_home = {
        "TOOLSERVER_URL": "http://127.0.0.1:9",
        "TOOLSERVER_API_KEY": "tsk_x",
        "TOOLSERVER_HOME": str(tmp_path),
    }
    import os

    done = subprocess.run(
        [sys.executable, "-m", "toolserver.cli", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env_home},
    )
    assert done.returncode == 1 and "not answering" in done.stdout and "Traceback" not in done.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "toolserver.cli", "sessions", "ls"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env_home},
    )
    assert listing.returncode == 1 and "cannot reach the tool server" in listing.stderr
    assert "Traceback" not in listing.stderr
