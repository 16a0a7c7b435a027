"""The sandbox image builder's pure parts, with a fake engine: no Docker, no network."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from docker.errors import ImageNotFound

from sandbox import _image_base, image, image_builder
from sandbox.errors import ImageBuildError

DOCKERFILE = "FROM x\n"
GUEST = {"sbxd.py": b"print('hi')\n", "helper.py": b"X = 1\n"}
REQS = ("ipykernel", "numpy")
BASE_ID = "sha256:" + "b" * 64


class FakeImagesAPI:
    """Answers `inspect_image` from a dict, like the engine's low-level API; anything else is an error."""

    def __init__(self, images: dict[str, dict[str, Any]]) -> None:
        self.images = images
        self.inspected: list[str] = []

    def inspect_image(self, name: str) -> dict[str, Any]:
        self.inspected.append(name)
        if name not in self.images:
            raise ImageNotFound(f"no such image: {name}")
        return self.images[name]


class FakeClient:
    def __init__(self, images: dict[str, dict[str, Any]]) -> None:
        self.api = FakeImagesAPI(images)


def fake_engine(images: dict[str, dict[str, Any]]) -> Any:
    """A FakeClient, typed loosely so it stands in for a `docker.DockerClient`."""
    return FakeClient(images)


def _image(image_id: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"Id": image_id, "Size": 123, "Config": {"Labels": labels}}


# --- inputs hash -------------------------------------------------------------------------------------


def test_hash_is_stable_for_the_same_inputs() -> None:
    first = image._inputs_hash(DOCKERFILE, GUEST, REQS, BASE_ID)
    assert first == image._inputs_hash(DOCKERFILE, dict(reversed(GUEST.items())), list(REQS), BASE_ID)
    assert first.startswith("sha256:") and len(first) == 7 + 64


@pytest.mark.parametrize(
    "changed",
    [
        {"dockerfile": DOCKERFILE + "USER 1000\n"},
        {"guest": {**GUEST, "sbxd.py": b"print('bye')\n"}},
        {"guest": {**GUEST, "extra.py": b""}},
        {"guest": {"sbxd.py": GUEST["sbxd.py"]}},
        {"guest": {"SBXD.py": GUEST["sbxd.py"], "helper.py": GUEST["helper.py"]}},
        {"requirements": (*REQS, "pandas")},
        {"requirements": ("ipykernel", "numpy>=2")},
        {"base_id": "sha256:" + "c" * 64},
    ],
)
def test_hash_changes_when_any_input_changes(changed: dict[str, Any]) -> None:
    inputs: dict[str, Any] = {
        "dockerfile": DOCKERFILE,
        "guest": GUEST,
        "requirements": REQS,
        "base_id": BASE_ID,
    }
    assert image._inputs_hash(**inputs) != image._inputs_hash(**{**inputs, **changed})


def test_hash_is_not_fooled_by_moving_bytes_between_inputs() -> None:
    assert image._inputs_hash("ab", {}, ("c",), BASE_ID) != image._inputs_hash("a", {}, ("bc",), BASE_ID)


# --- wheelhouse --------------------------------------------------------------------------------------


def _option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == option]


def test_pip_download_command_targets_the_image_python_and_arch(tmp_path: Path) -> None:
    command = image_builder.pip_download_command("3.12", "aarch64", tmp_path, REQS)
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--only-binary=:all:" in command
    assert _option_values(command, "--dest") == [str(tmp_path)]
    assert _option_values(command, "--python-version") == ["3.12"]
    assert _option_values(command, "--implementation") == ["cp"]
    assert _option_values(command, "--abi") == ["cp312"]
    assert _option_values(command, "--platform") == [
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
        "manylinux_2_28_aarch64",
        "any",
    ]
    assert command[-2:] == list(REQS)
    assert not any("x86_64" in word for word in command)


def test_pip_download_command_for_two_digit_minor_on_x86_64(tmp_path: Path) -> None:
    command = image_builder.pip_download_command("3.10", "x86_64", tmp_path, REQS)
    assert _option_values(command, "--abi") == ["cp310"]
    assert "manylinux2014_x86_64" in _option_values(command, "--platform")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("3.11 x86_64\n", ("3.11", "x86_64")),
        ("3.12 aarch64\n", ("3.12", "aarch64")),
        ("3.12 arm64\n", ("3.12", "aarch64")),
        ("3.13 amd64", ("3.13", "x86_64")),
    ],
)
def test_probe_output_is_parsed_and_arch_normalised(output: str, expected: tuple[str, str]) -> None:
    assert _image_base.parse_probe(output) == expected


def test_complete_wheelhouse_is_reused_without_running_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLSERVER_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # pip cannot be what answers here
    wheelhouse = tmp_path / "cache" / "wheelhouse" / "cp312-aarch64"
    wheelhouse.mkdir(parents=True)
    (wheelhouse / ".complete").write_text("\n".join(REQS) + "\n")
    lines: list[str] = []
    assert image_builder.fill_wheelhouse("3.12", "aarch64", REQS, lines.append) == wheelhouse
    assert lines == [f"      {wheelhouse} is complete"]


def _stand_in_for_pip(script: str) -> Any:
    """A `pip_download_command` replacement running `script` (with `dest` bound) instead of pip."""

    def command(python: str, arch: str, dest: Path, requirements: Any) -> list[str]:
        return [sys.executable, "-c", f"dest = {str(dest)!r}\n{script}"]

    return command


def test_wheelhouse_with_another_requirement_list_is_refilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLSERVER_HOME", str(tmp_path))
    wheelhouse = tmp_path / "cache" / "wheelhouse" / "cp311-x86_64"
    wheelhouse.mkdir(parents=True)
    (wheelhouse / ".complete").write_text("ipykernel\n")
    (wheelhouse / "stale-1.0-py3-none-any.whl").write_bytes(b"")
    script = "open(dest + '/fresh-1.0-py3-none-any.whl', 'w').close(); print('Saved fresh')"
    monkeypatch.setattr(image_builder, "pip_download_command", _stand_in_for_pip(script))
    lines: list[str] = []
    assert image_builder.fill_wheelhouse("3.11", "x86_64", REQS, lines.append) == wheelhouse
    assert lines == ["Saved fresh"]
    assert sorted(p.name for p in wheelhouse.iterdir()) == [".complete", "fresh-1.0-py3-none-any.whl"]
    assert (wheelhouse / ".complete").read_text() == "ipykernel\nnumpy\n"


def test_failed_download_leaves_no_stamp_and_reports_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLSERVER_HOME", str(tmp_path))
    script = "print('ERROR: No matching distribution found for numpy'); raise SystemExit(1)"
    monkeypatch.setattr(image_builder, "pip_download_command", _stand_in_for_pip(script))
    with pytest.raises(ImageBuildError, match="No matching distribution found for numpy"):
        image_builder.fill_wheelhouse("3.11", "x86_64", REQS, lambda _: None)
    assert not (tmp_path / "cache" / "wheelhouse" / "cp311-x86_64" / ".complete").exists()


# --- build context -----------------------------------------------------------------------------------


def test_context_holds_what_the_dockerfile_copies(tmp_path: Path) -> None:
    wheelhouse, ctx = tmp_path / "wheelhouse", tmp_path / "ctx"
    wheelhouse.mkdir()
    ctx.mkdir()
    (wheelhouse / "numpy-2.0-cp312-cp312-manylinux_2_17_x86_64.whl").write_bytes(b"wheel")
    (wheelhouse / ".complete").write_text("numpy\n")
    image._assemble_context(ctx, DOCKERFILE, wheelhouse, GUEST, REQS)
    assert (ctx / "Dockerfile").read_text() == DOCKERFILE
    assert (ctx / "requirements.txt").read_text() == "ipykernel\nnumpy\n"
    assert sorted(p.name for p in (ctx / "wheels").iterdir()) == [
        "numpy-2.0-cp312-cp312-manylinux_2_17_x86_64.whl"
    ]
    assert {p.name: p.read_bytes() for p in (ctx / "guest").iterdir()} == GUEST
    for path in (ctx / "guest").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_empty_guest_dir_gives_an_empty_guest_folder(tmp_path: Path) -> None:
    (tmp_path / "wheelhouse").mkdir()
    (tmp_path / "ctx").mkdir()
    image._assemble_context(tmp_path / "ctx", DOCKERFILE, tmp_path / "wheelhouse", {}, REQS)
    assert list((tmp_path / "ctx" / "guest").iterdir()) == []


def test_guest_files_are_the_python_files_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "sbxd.py").write_bytes(b"a")
    (tmp_path / "notes.txt").write_bytes(b"b")
    assert image._read_guest(tmp_path) == {"sbxd.py": b"a"}


def test_the_repository_dockerfile_meets_the_image_contract() -> None:
    text = image._read_dockerfile()
    assert "ARG BASE_IMAGE=python:3.12-slim" in text
    assert "--no-index --find-links /wheels" in text
    assert "USER 1000:1000" in text and "WORKDIR /workspace" in text
    assert "COPY guest/ /opt/toolserver/" in text
    assert 'CMD ["python3", "/opt/toolserver/sbxd.py", "--dir", "/sbx", "--workspace", "/workspace"]' in text
    for env in ("HOME=/workspace", "MPLBACKEND=Agg", "MPLCONFIGDIR=/tmp/.mpl", "PYTHONDONTWRITEBYTECODE=1"):
        assert env in text


# --- base choice and the up-to-date check, against a fake engine ------------------------------------------


def test_local_base_prefers_python_slim_then_the_debootstrap_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(image.BASE_ENV, raising=False)
    both = fake_engine({image.PYTHON_BASE: _image("a"), image.DEBOOTSTRAP_BASE: _image("b")})
    assert _image_base.local_base(both, None) == image.PYTHON_BASE
    only_debootstrap = fake_engine({image.DEBOOTSTRAP_BASE: _image("b")})
    assert _image_base.local_base(only_debootstrap, None) == image.DEBOOTSTRAP_BASE
    assert _image_base.local_base(fake_engine({}), None) is None


def test_explicit_base_wins_over_the_environment_which_wins_over_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = fake_engine({"mine:1": _image("m"), "env:1": _image("e"), image.PYTHON_BASE: _image("p")})
    monkeypatch.setenv(image.BASE_ENV, "env:1")
    assert _image_base.local_base(client, "mine:1") == "mine:1"
    assert _image_base.local_base(client, None) == "env:1"
    assert _image_base.local_base(client, "absent:1") is None


def test_up_to_date_image_is_returned_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(image.BASE_ENV, raising=False)
    (tmp_path / "sbxd.py").write_bytes(b"daemon")
    wanted = image._inputs_hash(image._read_dockerfile(), {"sbxd.py": b"daemon"}, image.REQUIREMENTS, BASE_ID)
    client = fake_engine(
        {
            image.DEBOOTSTRAP_BASE: _image(BASE_ID),
            "sandbox:t": _image("sha256:" + "1" * 64, {image.HASH_LABEL: wanted}),
        }
    )
    lines: list[str] = []
    built = image.build_image("sandbox:t", client=client, progress=lines.append, guest_dir=tmp_path)
    assert built == "sha256:" + "1" * 64
    assert lines == [f"sandbox:t is up to date ({built[:19]})"]
    status = image.image_status("sandbox:t", client=client, guest_dir=tmp_path)
    assert status == {
        "tag": "sandbox:t",
        "exists": True,
        "hash_matches": True,
        "id": built,
        "size": 123,
        "base": image.DEBOOTSTRAP_BASE,
    }


def test_status_of_a_stale_or_missing_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(image.BASE_ENV, raising=False)
    client = fake_engine(
        {
            image.DEBOOTSTRAP_BASE: _image(BASE_ID),
            "sandbox:old": _image("sha256:old", {image.HASH_LABEL: "sha256:something-else"}),
            "sandbox:unlabelled": _image("sha256:plain"),
        }
    )
    for tag in ("sandbox:old", "sandbox:unlabelled"):
        status = image.image_status(tag, client=client, guest_dir=tmp_path)
        assert status["exists"] and not status["hash_matches"]
    missing = image.image_status("sandbox:none", client=client, guest_dir=tmp_path)
    assert missing["exists"] is False and missing["hash_matches"] is False and missing["id"] is None


def test_missing_debootstrap_is_reported_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ImageBuildError, match=r"apt-get install debootstrap.*--base IMAGE"):
        _image_base.make_debootstrap_base(fake_engine({}), lambda _: None)


def test_non_root_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ImageBuildError, match="root privileges"):
        _image_base.make_debootstrap_base(fake_engine({}), lambda _: None)


# --- command line ------------------------------------------------------------------------------------


def test_help_names_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        image.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "build" in out and "status" in out and "debootstrap" in out


def test_build_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        image.main(["build", "--help"])
    out = capsys.readouterr().out
    for option in ("--tag", "--base", "--force", "--guest-dir"):
        assert option in out


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        image.main([])
    assert exit_info.value.code == 2


# --- the builder both images share -------------------------------------------------------------------


def test_steps_are_numbered_out_of_the_total() -> None:
    lines: list[str] = []
    step = image_builder.Steps(4, lines.append)
    step("choosing")
    step("probing")
    assert lines == ["[1/4] choosing", "[2/4] probing"]


def test_both_images_are_recipes_of_the_one_builder() -> None:
    from toolserver.serve.image import ServerImage

    server, sandbox = ServerImage(), image.SandboxImage()
    assert isinstance(server, image_builder.ImageRecipe) and isinstance(sandbox, image_builder.ImageRecipe)
    # The server reads the checkout it is part of by default.
    assert {"Dockerfile", "pyproject.toml", "sandbox/image_builder.py"} <= set(server.source)
    assert set(sandbox.guest) == {path.name for path in image.GUEST_DIR.glob("*.py")}
