"""Build the server image offline-first: `toolserver image build --server`.

The same builder as the sandbox image (`sandbox.image_builder`): a base image that is local, pulled, or made
with debootstrap; wheels downloaded on the host for the base's Python and architecture; a build that needs no
network; a label with the hash of the inputs (Dockerfile, this project's source, base image id), so a build
whose inputs did not change returns at once. This project itself goes in as a wheel built on the host from a
copy of the source (the checkout stays clean).
"""

from __future__ import annotations

import email.parser
import os
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
from typing_extensions import Unpack

from sandbox.errors import ImageBuildError
from sandbox.image_builder import (
    BuildOptions,
    ImageRecipe,
    Progress,
    Steps,
    build,
    fill_wheelhouse,
    inputs_digest,
    lay_out_context,
    link_or_copy,
    run_streaming,
    status,
)

__all__ = ["SERVER_BASE_ENV", "SERVER_IMAGE", "ServerImage", "build_server_image", "server_image_status"]

SERVER_IMAGE = "toolserver:latest"
SERVER_BASE_ENV = "TOOLSERVER_SERVER_BASE"
SOURCE_ROOT = Path(__file__).resolve().parent.parent.parent
EXTRAS = ("postgres",)  # the image serves clusters, whose registry is PostgreSQL

_PACKAGES = ("foundation", "toolserver", "sandbox", "agent_core", "registry")
_TOP_FILES = ("Dockerfile", "pyproject.toml", "README.md")
# README.md is only the wheel's long description: editing it must not rebuild a 600 MB image.
_UNHASHED = frozenset({"README.md"})
_SKIPPED_DIRS = frozenset({"__pycache__"})


class ServerImage(ImageRecipe):
    """The server image: the top-level Dockerfile and this project as a wheel, with its dependencies."""

    name = "server-image"
    steps = 2
    replaces_old = True

    def __init__(self, *, base_image: str | None = None, source_root: Path | None = None) -> None:
        self.base_image = base_image or os.environ.get(SERVER_BASE_ENV)
        self.source = _read_source(source_root or SOURCE_ROOT)

    def inputs_hash(self, base_id: str) -> str:
        """The digest of the source (README.md aside), the extras and the base."""
        return _inputs_hash(self.source, base_id)

    def assemble(
        self, context: Path, work: Path, python: str, arch: str, step: Steps, progress: Progress
    ) -> None:
        """The project's wheel, the wheelhouse of its dependencies, then the context the Dockerfile expects."""
        step("building the toolserver wheel (pip wheel --no-deps)")
        wheel = _build_project_wheel(self.source, work, progress)
        requirements = _wheel_requirements(wheel, EXTRAS)
        step(f"filling the wheelhouse for cp{python.replace('.', '')}-{arch}")
        wheelhouse = fill_wheelhouse(python, arch, requirements, progress, name="server")
        lay_out_context(context, self.source["Dockerfile"], requirements, wheelhouse)
        (context / "project").mkdir()
        link_or_copy(wheel, context / "project" / wheel.name)


def build_server_image(
    tag: str = SERVER_IMAGE,
    *,
    base_image: str | None = None,
    source_root: Path | None = None,
    **options: Unpack[BuildOptions],
) -> str:
    """Build the server image as `tag` unless it is up to date; return its image id."""
    return build(ServerImage(base_image=base_image, source_root=source_root), tag, **options)


def server_image_status(
    tag: str = SERVER_IMAGE,
    *,
    base_image: str | None = None,
    source_root: Path | None = None,
    client: docker.DockerClient | None = None,
) -> dict[str, Any]:
    """Whether `tag` exists and was built from the current inputs, with its id and size."""
    return status(ServerImage(base_image=base_image, source_root=source_root), tag, client)


def _inputs_hash(source: Mapping[str, bytes], base_id: str) -> str:
    """A digest of everything the image is made from (the wheels follow from pyproject.toml and the base)."""
    parts = [base_id.encode(), ",".join(EXTRAS).encode()]
    for name in sorted(source):
        if name not in _UNHASHED:
            parts += [name.encode(), source[name]]
    return inputs_digest(b"toolserver-server-inputs/1", parts)


def _read_source(root: Path) -> dict[str, bytes]:
    """The files the image is built from, by path relative to the source root."""
    if not (root / "Dockerfile").is_file() or not (root / "pyproject.toml").is_file():
        raise ImageBuildError(f"{root} has no Dockerfile or pyproject.toml: build from a source checkout")
    files = {name: (root / name).read_bytes() for name in _TOP_FILES if (root / name).is_file()}
    for package in _PACKAGES:
        for directory, subdirs, names in os.walk(root / package):
            subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
            for name in names:
                if not name.endswith((".pyc", ".pyo")):
                    path = Path(directory) / name
                    files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def _build_project_wheel(source: Mapping[str, bytes], work: Path, progress: Progress) -> Path:
    """`pip wheel --no-deps` of a copy of the source; returns the wheel."""
    tree, dist = work / "source", work / "dist"
    for name, content in source.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist)]
    run_streaming([*command, "--disable-pip-version-check", "--progress-bar", "off", str(tree)], progress)
    wheels = sorted(dist.glob("toolserver-*.whl"))
    if len(wheels) != 1:
        raise ImageBuildError(f"pip wheel made {len(wheels)} toolserver wheels instead of one")
    return wheels[0]


def _wheel_requirements(wheel: Path, extras: Sequence[str]) -> list[str]:
    """A wheel's dependencies (Requires-Dist) plus those of `extras`, with the extra markers stripped."""
    with zipfile.ZipFile(wheel) as archive:
        name = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
        if name is None:
            raise ImageBuildError(f"{wheel.name} has no METADATA")
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    wanted = {f'extra == "{extra}"' for extra in extras}
    requirements = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement, _, marker = (part.strip() for part in line.partition(";"))
        if not marker or marker in wanted:
            requirements.append(requirement)
        elif "extra" not in marker:
            requirements.append(line.strip())  # pip evaluates it for the target Python
    return list(dict.fromkeys(requirements))
