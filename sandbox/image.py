"""Build the sandbox image offline-first: `python -m sandbox.image build|status`.

The image is tagged with a hash of its inputs (Dockerfile, guest files, requirements, base image id), so a
build whose inputs did not change returns at once. Python packages come from a wheelhouse downloaded on the
host, because the build itself may have no usable network. The steps are `sandbox.image_builder`'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
from typing_extensions import Unpack

from sandbox._image_base import BASE_ENV, DEBOOTSTRAP_BASE, PYTHON_BASE
from sandbox.config import DEFAULT_IMAGE
from sandbox.errors import ImageBuildError
from sandbox.image_builder import (
    HASH_LABEL,
    BuildOptions,
    ImageRecipe,
    Progress,
    Steps,
    build,
    fill_wheelhouse,
    inputs_digest,
    lay_out_context,
    status,
)

__all__ = ["GUEST_DIR", "HASH_LABEL", "REQUIREMENTS", "SandboxImage", "build_image", "image_status", "main"]

REQUIREMENTS = ("ipykernel", "numpy", "pandas", "matplotlib")
GUEST_DIR = Path(__file__).resolve().parent / "_guest"
DOCKERFILE = Path(__file__).resolve().parent.parent / "deploy" / "sandbox" / "Dockerfile"


class SandboxImage(ImageRecipe):
    """The sandbox image: deploy/sandbox/Dockerfile, the guest daemon's files and the scientific stack."""

    name = "image"

    def __init__(self, *, base_image: str | None = None, guest_dir: Path | None = None) -> None:
        self.base_image = base_image
        self.dockerfile = _read_dockerfile()
        self.guest = _read_guest(guest_dir or GUEST_DIR)

    def inputs_hash(self, base_id: str) -> str:
        """The digest of the Dockerfile, the guest files, the requirements and the base."""
        return _inputs_hash(self.dockerfile, self.guest, REQUIREMENTS, base_id)

    def assemble(
        self, context: Path, work: Path, python: str, arch: str, step: Steps, progress: Progress
    ) -> None:
        """The wheelhouse for the base's Python, then the context the Dockerfile expects."""
        step(f"filling the wheelhouse for cp{python.replace('.', '')}-{arch}")
        wheelhouse = fill_wheelhouse(python, arch, REQUIREMENTS, progress)
        _assemble_context(context, self.dockerfile, wheelhouse, self.guest, REQUIREMENTS)


def build_image(
    tag: str = DEFAULT_IMAGE,
    *,
    base_image: str | None = None,
    guest_dir: Path | None = None,
    **options: Unpack[BuildOptions],
) -> str:
    """Build the sandbox image as `tag` unless it is up to date; return its image id."""
    return build(SandboxImage(base_image=base_image, guest_dir=guest_dir), tag, **options)


def image_status(
    tag: str = DEFAULT_IMAGE,
    *,
    base_image: str | None = None,
    guest_dir: Path | None = None,
    client: docker.DockerClient | None = None,
) -> dict[str, Any]:
    """Whether `tag` exists and was built from the current inputs, with its id and size."""
    return status(SandboxImage(base_image=base_image, guest_dir=guest_dir), tag, client)


def _inputs_hash(
    dockerfile: str, guest: Mapping[str, bytes], requirements: Sequence[str], base_id: str
) -> str:
    """A digest of everything the image is made from (wheels follow from requirements and base)."""
    parts = [dockerfile.encode(), "\n".join(requirements).encode(), base_id.encode()]
    for name in sorted(guest):
        parts += [name.encode(), guest[name]]
    return inputs_digest(b"toolserver-sandbox-inputs/1", parts)


def _read_dockerfile() -> str:
    """The Dockerfile's text, or a clear error when running from an install without `deploy/`."""
    try:
        return DOCKERFILE.read_text()
    except FileNotFoundError:
        raise ImageBuildError(f"{DOCKERFILE} not found: build from a source checkout") from None


def _read_guest(guest_dir: Path) -> dict[str, bytes]:
    """The guest daemon's files by name."""
    return {path.name: path.read_bytes() for path in sorted(guest_dir.glob("*.py"))}


def _assemble_context(
    ctx: Path, dockerfile: str, wheelhouse: Path, guest: Mapping[str, bytes], requirements: Sequence[str]
) -> None:
    """Lay out the build context the Dockerfile expects: requirements.txt, wheels/, guest/."""
    lay_out_context(ctx, dockerfile, requirements, wheelhouse)
    (ctx / "guest").mkdir()
    for name, content in guest.items():
        (ctx / "guest" / name).write_bytes(content)
        (ctx / "guest" / name).chmod(0o644)  # read by uid 1000, whatever the source file's mode


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `build` or `status`."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.image",
        description="Build or inspect the sandbox image. Works offline: without a pullable "
        f"{PYTHON_BASE} it makes a Debian base with debootstrap; wheels are downloaded on the host "
        "and cached under $TOOLSERVER_HOME/cache/wheelhouse.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tag", default=DEFAULT_IMAGE, help=f"image tag (default: {DEFAULT_IMAGE})")
    common.add_argument(
        "--base",
        metavar="IMAGE",
        help=f"base image (default: ${BASE_ENV}, else a local "
        f"{PYTHON_BASE} or {DEBOOTSTRAP_BASE}, else pull, else debootstrap)",
    )
    common.add_argument("--guest-dir", type=Path, help="guest daemon files (default: sandbox/_guest)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{build,status}")
    build = commands.add_parser("build", parents=[common], help="build the image unless it is up to date")
    commands.add_parser("status", parents=[common], help="show the image; exit 1 unless it is up to date")
    build.add_argument("--force", action="store_true", help="rebuild even when the image is up to date")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build_image(args.tag, base_image=args.base, force=args.force, guest_dir=args.guest_dir)
            return 0
        info = image_status(args.tag, base_image=args.base, guest_dir=args.guest_dir)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, value in info.items():
        print(f"{key}: {value}")
    return 0 if info["hash_matches"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
