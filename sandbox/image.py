"""Build the sandbox image offline-first: `python -m sandbox.image build|status`.

The image is tagged with a hash of its inputs (Dockerfile, guest files, requirements, base image id), so a
build whose inputs did not change returns at once. Python packages come from a wheelhouse downloaded on the
host, because the build itself may have no usable network.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, ContainerError, DockerException, ImageNotFound

from sandbox.config import DEFAULT_IMAGE
from sandbox.errors import ImageBuildError

__all__ = ["GUEST_DIR", "HASH_LABEL", "REQUIREMENTS", "build_image", "image_status", "main"]

REQUIREMENTS = ("ipykernel", "numpy", "pandas", "matplotlib")
HASH_LABEL = "toolserver.inputs-hash"
BASE_ENV = "TOOLSERVER_SANDBOX_BASE"
PYTHON_BASE = "python:3.12-slim"
DEBOOTSTRAP_BASE = "toolserver-base:bookworm"
GUEST_DIR = Path(__file__).resolve().parent / "_guest"
DOCKERFILE = Path(__file__).resolve().parent.parent / "deploy" / "sandbox" / "Dockerfile"

_PROBE = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine())"
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
_STAMP = ".complete"

Progress = Callable[[str], None]


def build_image(
    tag: str = DEFAULT_IMAGE,
    *,
    base_image: str | None = None,
    force: bool = False,
    progress: Progress = print,
    client: docker.DockerClient | None = None,
    guest_dir: Path | None = None,
) -> str:
    """Build the sandbox image as `tag` unless it is up to date; return its image id."""
    dockerfile, guest = _read_dockerfile(), _read_guest(guest_dir or GUEST_DIR)
    with _docker(client) as engine:
        current = _status(engine, tag, base_image, dockerfile, guest)
        if current["hash_matches"] and not force:
            progress(f"{tag} is up to date ({current['id'][:19]})")
            return str(current["id"])
        progress("[1/4] choosing the base image")
        base = _obtain_base(engine, base_image, progress)
        progress(f"[2/4] probing {base}")
        python, arch = _probe_base(engine, base)
        progress(f"      python {python}, {arch}")
        progress(f"[3/4] filling the wheelhouse for cp{python.replace('.', '')}-{arch}")
        wheelhouse = _fill_wheelhouse(python, arch, REQUIREMENTS, progress)
        inputs_hash = _inputs_hash(dockerfile, guest, REQUIREMENTS, _require_id(engine, base))
        progress(f"[4/4] building {tag} from {base}")
        with tempfile.TemporaryDirectory(prefix="toolserver-image-") as ctx:
            _assemble_context(Path(ctx), dockerfile, wheelhouse, guest, REQUIREMENTS)
            image_id = _docker_build(engine, Path(ctx), tag, base, inputs_hash, progress)
        size = (_inspect(engine, image_id) or {}).get("Size", 0)
        progress(f"built {tag} ({image_id[:19]}, {size / 1e6:.0f} MB)")
        return image_id


def image_status(
    tag: str = DEFAULT_IMAGE,
    *,
    base_image: str | None = None,
    client: docker.DockerClient | None = None,
    guest_dir: Path | None = None,
) -> dict[str, Any]:
    """Whether `tag` exists and was built from the current inputs, with its id and size."""
    with _docker(client) as engine:
        return _status(engine, tag, base_image, _read_dockerfile(), _read_guest(guest_dir or GUEST_DIR))


def _status(
    client: docker.DockerClient, tag: str, base_image: str | None, dockerfile: str, guest: Mapping[str, bytes]
) -> dict[str, Any]:
    """Status of `tag` against the current inputs; uses only local images, never the network."""
    info, base = _inspect(client, tag), _local_base(client, base_image)
    wanted = _inputs_hash(dockerfile, guest, REQUIREMENTS, _require_id(client, base)) if base else None
    labels = ((info or {}).get("Config") or {}).get("Labels") or {}
    return {
        "tag": tag,
        "exists": info is not None,
        "hash_matches": wanted is not None and labels.get(HASH_LABEL) == wanted,
        "id": info["Id"] if info else None,
        "size": info["Size"] if info else None,
        "base": base,
    }


def _inputs_hash(
    dockerfile: str, guest: Mapping[str, bytes], requirements: Sequence[str], base_id: str
) -> str:
    """A digest of everything the image is made from (wheels follow from requirements and base)."""
    digest = hashlib.sha256(b"toolserver-sandbox-inputs/1")
    parts = [dockerfile.encode(), "\n".join(requirements).encode(), base_id.encode()]
    for name in sorted(guest):
        parts += [name.encode(), guest[name]]
    for part in parts:  # length-prefixed, so moving bytes between parts changes the digest
        digest.update(len(part).to_bytes(8, "big") + part)
    return "sha256:" + digest.hexdigest()


def _read_dockerfile() -> str:
    """The Dockerfile's text, or a clear error when running from an install without `deploy/`."""
    try:
        return DOCKERFILE.read_text()
    except FileNotFoundError:
        raise ImageBuildError(f"{DOCKERFILE} not found: build from a source checkout") from None


def _read_guest(guest_dir: Path) -> dict[str, bytes]:
    """The guest daemon's files by name."""
    return {path.name: path.read_bytes() for path in sorted(guest_dir.glob("*.py"))}


@contextlib.contextmanager
def _docker(client: docker.DockerClient | None) -> Iterator[docker.DockerClient]:
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


def _inspect(client: docker.DockerClient, name: str) -> dict[str, Any] | None:
    """`docker image inspect`, or None when there is no such image."""
    try:
        return client.api.inspect_image(name)
    except ImageNotFound:
        return None


def _require_id(client: docker.DockerClient, name: str) -> str:
    info = _inspect(client, name)
    if info is None:
        raise ImageBuildError(f"image {name} vanished during the build")
    return str(info["Id"])


def _local_base(client: docker.DockerClient, explicit: str | None) -> str | None:
    """The base a build would use if it is already local: explicit, env, python slim, debootstrap base."""
    wanted = explicit or os.environ.get(BASE_ENV)
    candidates = [wanted] if wanted else [PYTHON_BASE, DEBOOTSTRAP_BASE]
    return next((name for name in candidates if _inspect(client, name) is not None), None)


def _obtain_base(client: docker.DockerClient, explicit: str | None, progress: Progress) -> str:
    """A base image that is local afterwards: local, pulled, or made with debootstrap."""
    local = _local_base(client, explicit)
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
    _make_debootstrap_base(client, progress)
    return DEBOOTSTRAP_BASE


def _make_debootstrap_base(client: docker.DockerClient, progress: Progress) -> None:
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
        _run_streaming([*command, str(rootfs)], progress)
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


def _run_streaming(command: Sequence[str], progress: Progress) -> None:
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


def _probe_base(client: docker.DockerClient, base: str) -> tuple[str, str]:
    """The base's Python version ("3.12") and the engine's machine architecture ("x86_64")."""
    try:
        out = client.containers.run(base, ["python3", "-c", _PROBE], remove=True, network_mode="none")
    except (ContainerError, APIError) as exc:
        raise ImageBuildError(f"base image {base} has no working python3: {exc}") from exc
    return _parse_probe(out.decode())


def _parse_probe(output: str) -> tuple[str, str]:
    python, machine = output.split()[-2:]
    return python, _ARCH_ALIASES.get(machine, machine)


def _pip_download_command(python: str, arch: str, dest: Path, requirements: Sequence[str]) -> list[str]:
    """`pip download` of binary wheels for a CPython version and Linux architecture other than the host's."""
    platforms = [f"manylinux_2_17_{arch}", f"manylinux2014_{arch}", f"manylinux_2_28_{arch}", "any"]
    command = [sys.executable, "-m", "pip", "download", "--dest", str(dest), "--only-binary=:all:"]
    command += ["--python-version", python, "--implementation", "cp", "--abi", f"cp{python.replace('.', '')}"]
    for platform_tag in platforms:
        command += ["--platform", platform_tag]
    return [*command, "--progress-bar", "off", "--disable-pip-version-check", *requirements]


def _fill_wheelhouse(
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
    _run_streaming(_pip_download_command(python, arch, wheelhouse, requirements), progress)
    stamp.write_text(wanted)
    return wheelhouse


def _assemble_context(
    ctx: Path, dockerfile: str, wheelhouse: Path, guest: Mapping[str, bytes], requirements: Sequence[str]
) -> None:
    """Lay out the build context the Dockerfile expects: requirements.txt, wheels/, guest/."""
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (ctx / "wheels").mkdir()
    for wheel in sorted(wheelhouse.glob("*.whl")):
        try:
            os.link(wheel, ctx / "wheels" / wheel.name)
        except OSError:
            shutil.copyfile(wheel, ctx / "wheels" / wheel.name)
    (ctx / "guest").mkdir()
    for name, content in guest.items():
        (ctx / "guest" / name).write_bytes(content)
        (ctx / "guest" / name).chmod(0o644)  # read by uid 1000, whatever the source file's mode


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
    return str(image_id) if image_id else _require_id(client, tag)


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
