"""The sandboxes' runtime directory is made private, and one another user could reach is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sandbox._runtime_dir import prepare_runtime_dir
from sandbox.config import SandboxConfig
from sandbox.docker import DockerBackend
from sandbox.errors import RuntimeDirUnsafe


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_runtime_dir_is_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "tsbx-test"
    old = os.umask(0)
    try:
        prepare_runtime_dir(str(path))
    finally:
        os.umask(old)
    assert path.is_dir() and _mode(path) == 0o700
    prepare_runtime_dir(str(path))  # an existing private one of ours is fine


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o777, 0o1777])
def test_group_or_other_write_permissions_are_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tsbx-open"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(RuntimeDirUnsafe) as caught:
        prepare_runtime_dir(str(path))
    message = caught.value.message
    assert str(path) in message and "TMPDIR" in message and "0700" in message
    assert caught.value.to_dict()["type"] == "runtime_dir_unsafe"


def test_an_own_directory_only_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "tsbx-old"  # as earlier versions left it
    path.mkdir()
    path.chmod(0o755)
    prepare_runtime_dir(str(path))
    assert _mode(path) == 0o700


def test_a_symlink_is_refused_even_to_a_private_directory(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "tsbx-link"
    link.symlink_to(target)
    with pytest.raises(RuntimeDirUnsafe, match="is a symlink"):
        prepare_runtime_dir(str(link))


def test_a_file_in_its_place_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tsbx-file"
    path.write_text("")
    with pytest.raises(RuntimeDirUnsafe, match="is not a directory"):
        prepare_runtime_dir(str(path))


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory of another owner needs root")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tsbx-theirs"
    path.mkdir(mode=0o700)
    os.chown(path, 4242, 4242)
    with pytest.raises(RuntimeDirUnsafe, match="belongs to uid 4242"):
        prepare_runtime_dir(str(path))


def test_the_backend_refuses_an_unsafe_runtime_dir_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tsbx-shared"
    path.mkdir()
    path.chmod(0o1777)
    with pytest.raises(RuntimeDirUnsafe, match=str(path)):
        DockerBackend(SandboxConfig(runtime_dir=str(path)), client=object())
