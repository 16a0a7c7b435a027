"""The SDK and its wire models pass `mypy --strict`, so users' type checkers see real signatures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


PACKAGES = ["-p", "toolserver.client", "-p", "toolserver.api"]


def test_the_sdk_is_strictly_typed(tmp_path):
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 0, checked.stdout[-4000:]
    assert "Success" in checked.stdout


def test_a_users_mistake_is_caught_by_the_type_checker(tmp_path):
    """The check can fail: a misuse of the SDK's answer is an error under --strict."""
    user = tmp_path / "user_code.py"
    user.write_text(
        "from toolserver import Client\n\n"
        "with Client() as ts, ts.session() as s:\n"
        "    exit_code: str = s.shell('true').exit_code\n"
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(user)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 1 and "Incompatible types in assignment" in checked.stdout, checked.stdout
