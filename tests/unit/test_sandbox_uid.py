"""A sandbox never runs as the server's uid (it could make the server's /sbx writable again), nor as root."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from foundation.errors import UserError
from sandbox.config import SandboxConfig
from sandbox.docker import DockerBackend


def _backend(tmp_path: os.PathLike[str], uid: int) -> DockerBackend:
    return DockerBackend(SandboxConfig(runtime_dir=os.path.join(tmp_path, "rt"), uid=uid), client=object())


def test_the_configured_uid_is_kept_when_it_is_not_the_servers(tmp_path: os.PathLike[str]) -> None:
    other = os.geteuid() + 7
    assert _backend(tmp_path, other).config.uid == other


def test_the_servers_own_uid_is_never_a_sandboxs(tmp_path: os.PathLike[str]) -> None:
    euid = os.geteuid()
    if euid != 0:
        assert _backend(tmp_path, euid).config.uid == euid + 1
        return
    # As root, check it the way the server image runs: as uid 1000, the sandboxes' default.
    code = (
        "import os\n"
        "from sandbox.config import SandboxConfig\n"
        "from sandbox.docker import _with_sandbox_uid\n"
        "os.setegid(1000); os.seteuid(1000)\n"
        "print(_with_sandbox_uid(SandboxConfig(uid=1000)).uid)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "1001", done.stderr


def test_root_is_refused_as_the_sandbox_uid(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(UserError, match="never run as root"):
        _backend(tmp_path, 0)
