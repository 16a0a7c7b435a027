"""Build the server image offline-first: `toolserver image build --server`.

The same recipe as the sandbox image (sandbox/image.py, whose base, probe, wheelhouse and build helpers
this reuses): a base image that is local, pulled, or made with debootstrap; wheels downloaded on the host
for the base's Python and architecture; a build that needs no network; a label with the hash of the inputs
(Dockerfile, this project's source, base image id), so a build whose inputs did not change returns at once.
This project itself goes in as a wheel built on the host from a copy of the source (the checkout stays clean).
"""

from __future__ import annotations

import contextlib
import email.parser
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError

from sandbox.errors import ImageBuildError
from sandbox.image import (
    HASH_LABEL,
    Progress,
    _docker,
    _docker_build,
    _fill_wheelhouse,
    _inspect,
    _local_base,
    _obtain_base,
    _probe_base,
    _require_id,
    _run_streaming,
)

__all__ = ["SERVER_BASE_ENV", "SERVER_IMAGE", "build_server_image", "server_image_status"]

SERVER_IMAGE = "toolserver:latest"
SERVER_BASE_ENV = "TOOLSERVER_SERVER_BASE"
SOURCE_ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("postgres",)  # the image serves clusters, whose registry is PostgreSQL

_PACKAGES = ("foundation", "toolserver", "sandbox", "agent_core", "registry")
_TOP_FILES = ("Dockerfile", "pyproject.toml", "README.md")
# README.md is only the wheel's long description: editing it must not rebuild a 600 MB image.
_UNHASHED = frozenset({"README.md"})
_SKIPPED_DIRS = frozenset({"__pycache__"})


def build_server_image(
    tag: str = SERVER_IMAGE,
    *,
    base_image: str | None = None,
    force: bool = False,
    progress: Progress = print,
    client: docker.DockerClient | None = None,
    source_root: Path | None = None,
) -> str:
    """Build the server image as `tag` unless it is up to date; return its image id."""
    source = _read_source(source_root or SOURCE_ROOT)
    explicit = base_image or os.environ.get(SERVER_BASE_ENV)
    with _docker(client) as engine:
        current = _status(engine, tag, explicit, source)
        if current["hash_matches"] and not force:
            progress(f"{tag} is up to date ({current['id'][:19]})")
            return str(current["id"])
        progress("[1/5] choosing the base image")
        base = _obtain_base(engine, explicit, progress)
        progress(f"[2/5] probing {base}")
        python, arch = _probe_base(engine, base)
        progress(f"      python {python}, {arch}")
        with tempfile.TemporaryDirectory(prefix="toolserver-server-image-") as work:
            progress("[3/5] building the toolserver wheel (pip wheel --no-deps)")
            wheel = _build_project_wheel(source, Path(work), progress)
            requirements = _wheel_requirements(wheel, EXTRAS)
            progress(f"[4/5] filling the wheelhouse for cp{python.replace('.', '')}-{arch}")
            wheelhouse = _fill_wheelhouse(python, arch, requirements, progress, name="server")
            inputs_hash = _inputs_hash(source, _require_id(engine, base))
            progress(f"[5/5] building {tag} from {base}")
            context = Path(work) / "context"
            _assemble_context(context, source["Dockerfile"], requirements, wheelhouse, wheel)
            image_id = _docker_build(engine, context, tag, base, inputs_hash, progress)
        if current["id"] and current["id"] != image_id:
            _remove_replaced(engine, str(current["id"]))
        size = (_inspect(engine, image_id) or {}).get("Size", 0)
        progress(f"built {tag} ({image_id[:19]}, {size / 1e6:.0f} MB)")
        return image_id


def server_image_status(
    tag: str = SERVER_IMAGE,
    *,
    base_image: str | None = None,
    client: docker.DockerClient | None = None,
    source_root: Path | None = None,
) -> dict[str, Any]:
    """Whether `tag` exists and was built from the current inputs, with its id and size."""
    source = _read_source(source_root or SOURCE_ROOT)
    with _docker(client) as engine:
        return _status(engine, tag, base_image or os.environ.get(SERVER_BASE_ENV), source)


def _status(
    client: docker.DockerClient, tag: str, base_image: str | None, source: Mapping[str, bytes]
) -> dict[str, Any]:
    """Status of `tag` against the current inputs; uses only local images, never the network."""
    info, base = _inspect(client, tag), _local_base(client, base_image)
    wanted = _inputs_hash(source, _require_id(client, base)) if base else None
    labels = ((info or {}).get("Config") or {}).get("Labels") or {}
    return {
        "tag": tag,
        "exists": info is not None,
        "hash_matches": wanted is not None and labels.get(HASH_LABEL) == wanted,
        "id": info["Id"] if info else None,
        "size": info["Size"] if info else None,
        "base": base,
    }


def _inputs_hash(source: Mapping[str, bytes], base_id: str) -> str:
    """A digest of everything the image is made from (the wheels follow from pyproject.toml and the base)."""
    digest = hashlib.sha256(b"toolserver-server-inputs/1")
    parts = [base_id.encode(), ",".join(EXTRAS).encode()]
    for name in sorted(source):
        if name not in _UNHASHED:
            parts += [name.encode(), source[name]]
    for part in parts:  # length-prefixed, so moving bytes between parts changes the digest
        digest.update(len(part).to_bytes(8, "big") + part)
    return "sha256:" + digest.hexdigest()


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
    _run_streaming([*command, "--disable-pip-version-check", "--progress-bar", "off", str(tree)], progress)
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


def _assemble_context(
    context: Path, dockerfile: bytes, requirements: Sequence[str], wheelhouse: Path, wheel: Path
) -> None:
    """Lay out the build context the Dockerfile expects: requirements.txt, wheels/, project/."""
    (context / "wheels").mkdir(parents=True)
    (context / "project").mkdir()
    (context / "Dockerfile").write_bytes(dockerfile)
    (context / "requirements.txt").write_text("\n".join(requirements) + "\n")
    links = [(path, context / "wheels" / path.name) for path in sorted(wheelhouse.glob("*.whl"))]
    for source, target in [*links, (wheel, context / "project" / wheel.name)]:
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)


def _remove_replaced(client: docker.DockerClient, image_id: str) -> None:
    """Remove the image a rebuild replaced (a source change rebuilds often); kept while a container uses it."""
    with contextlib.suppress(APIError):
        client.api.remove_image(image_id, noprune=False)
