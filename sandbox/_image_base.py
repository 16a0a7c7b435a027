"""The engine side of an image build: a base image that is local, pulled or made with debootstrap, and its probe."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, ContainerError, DockerException, ImageNotFound

from sandbox.errors import ImageBuildError

__all__ = [
    "BASE_ENV",
    "DEBOOTSTRAP_BASE",
    "PYTHON_BASE",
    "Progress",
    "docker_client",
    "inspect",
    "local_base",
    "make_debootstrap_base",
    "obtain_base",
    "parse_probe",
    "probe_base",
    "require_id",
    "run_streaming",
]

BASE_ENV = "TOOLSERVER_SANDBOX_BASE"
PYTHON_BASE = "python:3.12-slim"
DEBOOTSTRAP_BASE = "toolserver-base:bookworm"

_PROBE = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine())"
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

Progress = Callable[[str], None]


@contextlib.contextmanager
def docker_client(client: docker.DockerClient | None) -> Iterator[docker.DockerClient]:
    """The caller's client, or one from the environment that is closed afterwards."""
    if client is not None:
        yield client
        return
    try:
        owned = docker.from_env()
    except DockerException as exc:
        raise ImageBuildError(f"cannot reach the Docker engine: {exc}") from exc
    with contextlib.closing(owned):
        yield owned


def inspect(client: docker.DockerClient, name: str) -> dict[str, Any] | None:
    """`docker image inspect`, or None when there is no such image."""
    try:
        return client.api.inspect_image(name)
    except ImageNotFound:
        return None


def require_id(client: docker.DockerClient, name: str) -> str:
    """The id of an image that must exist."""
    info = inspect(client, name)
    if info is None:
        raise ImageBuildError(f"image {name} vanished during the build")
    return str(info["Id"])


def local_base(client: docker.DockerClient, explicit: str | None) -> str | None:
    """The base a build would use if it is already local: explicit, env, python slim, debootstrap base."""
    wanted = explicit or os.environ.get(BASE_ENV)
    candidates = [wanted] if wanted else [PYTHON_BASE, DEBOOTSTRAP_BASE]
    return next((name for name in candidates if inspect(client, name) is not None), None)


def obtain_base(client: docker.DockerClient, explicit: str | None, progress: Progress) -> str:
    """A base image that is local afterwards: local, pulled, or made with debootstrap."""
    local = local_base(client, explicit)
    if local is not None:
        progress(f"      {local} (local)")
        return local
    wanted = explicit or os.environ.get(BASE_ENV)
    progress(f"      pulling {wanted or PYTHON_BASE}")
    try:
        client.images.pull(wanted or PYTHON_BASE)
        return wanted or PYTHON_BASE
    except DockerException as exc:
        progress(f"      pull failed: {str(exc).splitlines()[0][:200]}")
    if wanted:
        raise ImageBuildError(f"base image {wanted} is not local and cannot be pulled")
    progress(f"      {PYTHON_BASE} cannot be pulled; making {DEBOOTSTRAP_BASE} with debootstrap")
    make_debootstrap_base(client, progress)
    return DEBOOTSTRAP_BASE


def make_debootstrap_base(client: docker.DockerClient, progress: Progress) -> None:
    """Make a Debian bookworm base with debootstrap and import it as DEBOOTSTRAP_BASE."""
    missing = []
    if shutil.which("debootstrap") is None:
        missing.append("debootstrap (apt-get install debootstrap)")
    if os.geteuid() != 0:
        missing.append("root privileges")
    if missing:
        raise ImageBuildError(
            f"no base image: {PYTHON_BASE} cannot be pulled and making {DEBOOTSTRAP_BASE} needs "
            f"{' and '.join(missing)}; or pass --base IMAGE / set {BASE_ENV}"
        )
    workdir = Path(tempfile.mkdtemp(prefix="toolserver-rootfs-"))
    rootfs = workdir / "rootfs"
    try:
        command = ["debootstrap", "--variant=minbase", "--include=python3,python3-pip,procps", "bookworm"]
        run_streaming([*command, str(rootfs)], progress)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):  # ~90 MB nobody needs at run time
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        progress(f"      importing {DEBOOTSTRAP_BASE}")
        tarball = workdir / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], check=True)
        repository, _, tag = DEBOOTSTRAP_BASE.partition(":")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
        ]
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
    except (OSError, subprocess.CalledProcessError, APIError) as exc:
        raise ImageBuildError(f"making {DEBOOTSTRAP_BASE} failed: {exc}") from exc
    finally:
        _remove_tree(workdir)


def _remove_tree(path: Path) -> None:
    """Delete a debootstrap work tree, but never through a mount left in it (it may be the host's /dev)."""
    for mountpoint in sorted(_mounts_under(path), reverse=True):
        subprocess.run(["umount", "-l", mountpoint], check=False)
    if not _mounts_under(path):
        shutil.rmtree(path, ignore_errors=True)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [m for m in (line.split()[1] for line in mounts) if m.startswith(f"{path}/")]


def run_streaming(command: Sequence[str], progress: Progress) -> None:
    """Run a command, passing each output line to `progress`; fail with its last lines."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise ImageBuildError(f"cannot run {command[0]}: {exc}") from exc
    with proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            progress(line.rstrip())
            tail = [*tail[-19:], line.rstrip()]
    if proc.returncode != 0:
        raise ImageBuildError(
            f"{' '.join(command[:4])} ... exited with {proc.returncode}:\n" + "\n".join(tail)
        )


def probe_base(client: docker.DockerClient, base: str) -> tuple[str, str]:
    """The base's Python version ("3.12") and the engine's machine architecture ("x86_64")."""
    try:
        out = client.containers.run(base, ["python3", "-c", _PROBE], remove=True, network_mode="none")
    except (ContainerError, APIError) as exc:
        raise ImageBuildError(f"base image {base} has no working python3: {exc}") from exc
    return parse_probe(out.decode())


def parse_probe(output: str) -> tuple[str, str]:
    """(python version, normalised machine) from the probe's output."""
    python, machine = output.split()[-2:]
    return python, _ARCH_ALIASES.get(machine, machine)
