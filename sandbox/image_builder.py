"""One offline-first image builder for the sandbox image and the server image.

An image is described by an `ImageRecipe`: a digest of its inputs and how its build context is laid out.
`build` does the rest the same way for every image: skip when the image's label holds the current digest, else
a base image that is local, pulled, or made with debootstrap; a probe of its Python and architecture; wheels
downloaded on the host for them (the build itself may have no usable network); a classic `docker build` that
streams its progress and labels the image with the digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import docker
from docker.errors import APIError

from sandbox._image_base import (
    Progress,
    docker_client,
    inspect,
    local_base,
    obtain_base,
    probe_base,
    require_id,
    run_streaming,
)
from sandbox.errors import ImageBuildError

__all__ = [
    "HASH_LABEL",
    "BuildOptions",
    "ImageRecipe",
    "Progress",
    "Steps",
    "build",
    "fill_wheelhouse",
    "inputs_digest",
    "lay_out_context",
    "link_or_copy",
    "pip_download_command",
    "run_streaming",
    "status",
]

HASH_LABEL = "toolserver.inputs-hash"
_STAMP = ".complete"


class Steps:
    """Numbered progress lines, `[3/5] ...`, out of a known total."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total = total
        self.done = 0
        self.progress = progress

    def __call__(self, text: str) -> None:
        """Announce the next step."""
        self.done += 1
        self.progress(f"[{self.done}/{self.total}] {text}")


class ImageRecipe(ABC):
    """What one image is made of: the digest of its inputs and the layout of its build context."""

    name: str = "image"  # in the names of temporary directories
    base_image: str | None = None  # the caller's choice of base; None: the default choice
    steps: int = 1  # how many `Steps` lines `assemble` announces
    replaces_old: bool = False  # whether a rebuild removes the image it replaced

    @abstractmethod
    def inputs_hash(self, base_id: str) -> str:
        """A digest of everything the image is made from, on the base image `base_id`."""

    @abstractmethod
    def assemble(
        self, context: Path, work: Path, python: str, arch: str, step: Steps, progress: Progress
    ) -> None:
        """Lay out the build context in `context` (wheels for `python` and `arch` included); `work` is scratch."""


def inputs_digest(salt: bytes, parts: Iterable[bytes]) -> str:
    """A sha256 digest of `parts`, length-prefixed so that moving bytes between parts changes it."""
    digest = hashlib.sha256(salt)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return "sha256:" + digest.hexdigest()


class BuildOptions(TypedDict, total=False):
    """How `build` goes about it: rebuild even when up to date, where progress goes, which engine."""

    force: bool
    progress: Progress
    client: docker.DockerClient | None


def status(recipe: ImageRecipe, tag: str, client: docker.DockerClient | None = None) -> dict[str, Any]:
    """Whether `tag` exists and was built from the recipe's current inputs; uses only local images."""
    with docker_client(client) as engine:
        return _status(recipe, tag, engine)


def _status(recipe: ImageRecipe, tag: str, client: docker.DockerClient) -> dict[str, Any]:
    info, base = inspect(client, tag), local_base(client, recipe.base_image)
    wanted = recipe.inputs_hash(require_id(client, base)) if base else None
    labels = ((info or {}).get("Config") or {}).get("Labels") or {}
    return {
        "tag": tag,
        "exists": info is not None,
        "hash_matches": wanted is not None and labels.get(HASH_LABEL) == wanted,
        "id": info["Id"] if info else None,
        "size": info["Size"] if info else None,
        "base": base,
    }


def build(
    recipe: ImageRecipe,
    tag: str,
    *,
    force: bool = False,
    progress: Progress = print,
    client: docker.DockerClient | None = None,
) -> str:
    """Build `recipe` as `tag` unless it is up to date; return the image id."""
    with docker_client(client) as engine:
        current = _status(recipe, tag, engine)
        if current["hash_matches"] and not force:
            progress(f"{tag} is up to date ({current['id'][:19]})")
            return str(current["id"])
        step = Steps(recipe.steps + 3, progress)
        step("choosing the base image")
        base = obtain_base(engine, recipe.base_image, progress)
        step(f"probing {base}")
        python, arch = probe_base(engine, base)
        progress(f"      python {python}, {arch}")
        with tempfile.TemporaryDirectory(prefix=f"toolserver-{recipe.name}-") as work:
            context = Path(work) / "context"
            context.mkdir()
            recipe.assemble(context, Path(work), python, arch, step, progress)
            inputs_hash = recipe.inputs_hash(require_id(engine, base))
            step(f"building {tag} from {base}")
            image_id = _docker_build(engine, context, tag, base, inputs_hash, progress)
        if recipe.replaces_old and current["id"] and current["id"] != image_id:
            _remove_replaced(engine, str(current["id"]))
        size = (inspect(engine, image_id) or {}).get("Size", 0)
        progress(f"built {tag} ({image_id[:19]}, {size / 1e6:.0f} MB)")
        return image_id


def pip_download_command(python: str, arch: str, dest: Path, requirements: Sequence[str]) -> list[str]:
    """`pip download` of binary wheels for a CPython version and Linux architecture other than the host's."""
    platforms = [f"manylinux_2_17_{arch}", f"manylinux2014_{arch}", f"manylinux_2_28_{arch}", "any"]
    command = [sys.executable, "-m", "pip", "download", "--dest", str(dest), "--only-binary=:all:"]
    command += ["--python-version", python, "--implementation", "cp", "--abi", f"cp{python.replace('.', '')}"]
    for platform_tag in platforms:
        command += ["--platform", platform_tag]
    return [*command, "--progress-bar", "off", "--disable-pip-version-check", *requirements]


def fill_wheelhouse(
    python: str, arch: str, requirements: Sequence[str], progress: Progress, *, name: str = ""
) -> Path:
    """The cached wheelhouse for this Python and arch, downloaded unless its stamp lists `requirements`.

    Images with other requirements pass their own `name`, so that they do not take turns wiping one cache.
    """
    home = Path(os.environ.get("TOOLSERVER_HOME") or Path.home() / ".toolserver").expanduser()
    folder = f"cp{python.replace('.', '')}-{arch}"
    wheelhouse = home / "cache" / "wheelhouse" / (f"{name}-{folder}" if name else folder)
    stamp, wanted = wheelhouse / _STAMP, "\n".join(requirements) + "\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        progress(f"      {wheelhouse} is complete")
        return wheelhouse
    shutil.rmtree(wheelhouse, ignore_errors=True)  # a fresh list means a fresh resolution
    wheelhouse.mkdir(parents=True)
    run_streaming(pip_download_command(python, arch, wheelhouse, requirements), progress)
    stamp.write_text(wanted)
    return wheelhouse


def lay_out_context(
    context: Path, dockerfile: str | bytes, requirements: Sequence[str], wheelhouse: Path
) -> None:
    """What every image's Dockerfile copies: itself, requirements.txt, and wheels/ from the wheelhouse."""
    context.mkdir(parents=True, exist_ok=True)
    data = dockerfile.encode() if isinstance(dockerfile, str) else dockerfile
    (context / "Dockerfile").write_bytes(data)
    (context / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (context / "wheels").mkdir()
    for wheel in sorted(wheelhouse.glob("*.whl")):
        link_or_copy(wheel, context / "wheels" / wheel.name)


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link to `source` at `target`, or a copy where linking fails (another file system)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _docker_build(
    client: docker.DockerClient, ctx: Path, tag: str, base: str, inputs_hash: str, progress: Progress
) -> str:
    """Build with the classic builder, streaming its output; return the new image id."""
    stream = client.api.build(
        path=str(ctx),
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        labels={HASH_LABEL: inputs_hash},
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
        timeout=None,  # a quiet RUN step may take longer than the client's default read timeout
    )
    image_id = None
    try:
        for chunk in stream:
            if "error" in chunk:
                raise ImageBuildError(f"docker build of {tag} failed: {chunk['error'].strip()}")
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    progress(line.rstrip())
            image_id = (chunk.get("aux") or {}).get("ID", image_id)
    except APIError as exc:
        raise ImageBuildError(f"docker build of {tag} failed: {exc}") from exc
    return str(image_id) if image_id else require_id(client, tag)


def _remove_replaced(client: docker.DockerClient, image_id: str) -> None:
    """Remove the image a rebuild replaced (a source change rebuilds often); kept while a container uses it."""
    with contextlib.suppress(APIError):
        client.api.remove_image(image_id, noprune=False)
