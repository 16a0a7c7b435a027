"""The workspace contract: files round trip, paths are normalised or refused, listings and errors agree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from sandbox.errors import FileTooLarge, InvalidPath, WorkspaceFileNotFound
from tests.contract.conftest import MAX_FILE_BYTES, Subject


async def test_a_file_comes_back_byte_for_byte(subject: Subject) -> None:
    data = bytes(range(256)) * 8 + b"\x00\r\n end"
    entry = await subject.sandbox.write_file("data/blob.bin", data)
    assert (entry.path, entry.size, entry.is_dir) == ("data/blob.bin", len(data), False)
    assert await subject.sandbox.read_file("data/blob.bin") == data


async def test_an_empty_file_round_trips(subject: Subject) -> None:
    assert (await subject.sandbox.write_file("empty", b"")).size == 0
    assert await subject.sandbox.read_file("empty") == b""


async def test_writing_again_replaces_the_content(subject: Subject) -> None:
    await subject.sandbox.write_file("notes.txt", b"a first, longer version")
    await subject.sandbox.write_file("notes.txt", b"second")
    assert await subject.sandbox.read_file("notes.txt") == b"second"


async def test_paths_are_normalised(subject: Subject) -> None:
    entry = await subject.sandbox.write_file("./notes//today/./a.txt", b"x")
    assert entry.path == "notes/today/a.txt"
    assert await subject.sandbox.read_file("notes/today/a.txt") == b"x"
    assert [e.path for e in await subject.sandbox.list_files("./notes/")] == ["notes/today"]


async def test_a_listing_is_one_level_sorted_by_path(subject: Subject) -> None:
    for path in ("ls/zeta.txt", "ls/alpha.txt", "ls/mid/inner.txt", "ls/mid/deeper/leaf.txt"):
        await subject.sandbox.write_file(path, b"12345")
    listed = await subject.sandbox.list_files("ls")
    assert [(e.path, e.is_dir) for e in listed] == [
        ("ls/alpha.txt", False),
        ("ls/mid", True),
        ("ls/zeta.txt", False),
    ]
    assert [e.size for e in listed if not e.is_dir] == [5, 5]
    assert [e.path for e in await subject.sandbox.list_files("ls/mid")] == [
        "ls/mid/deeper",
        "ls/mid/inner.txt",
    ]
    assert "ls" in {e.path for e in await subject.sandbox.list_files()}  # the root, by default


async def test_a_listed_file_has_the_size_and_mtime_of_its_write(subject: Subject) -> None:
    written = await subject.sandbox.write_file("stamp/file.txt", b"abc")
    (listed,) = await subject.sandbox.list_files("stamp")
    assert listed == written


REFUSED_PATHS = ["../etc/passwd", "/etc/passwd", "a/../../b", "a/..", "a\\b", "nul\x00byte", "x" * 2000]


@pytest.mark.parametrize("path", REFUSED_PATHS)
async def test_a_path_that_could_leave_the_workspace_is_refused_everywhere(
    subject: Subject, path: str
) -> None:
    sandbox = subject.sandbox
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: sandbox.write_file(path, b"x"),
        lambda: sandbox.read_file(path),
        lambda: sandbox.list_files(path),
    ]
    for operation in operations:
        with pytest.raises(InvalidPath):
            await operation()


@pytest.mark.parametrize("path", ["", ".", "./", "//"])
async def test_a_file_operation_needs_a_file_path(subject: Subject, path: str) -> None:
    with pytest.raises(InvalidPath):
        await subject.sandbox.write_file(path, b"x")
    with pytest.raises(InvalidPath):
        await subject.sandbox.read_file(path)


async def test_a_missing_file_is_not_found(subject: Subject) -> None:
    with pytest.raises(WorkspaceFileNotFound):
        await subject.sandbox.read_file("nothing/here.txt")


async def test_listing_a_missing_directory_is_not_found(subject: Subject) -> None:
    with pytest.raises(WorkspaceFileNotFound):
        await subject.sandbox.list_files("no-such-dir")


async def test_a_directory_is_not_a_file_and_a_file_not_a_directory(subject: Subject) -> None:
    await subject.sandbox.write_file("tree/leaf.txt", b"x")
    with pytest.raises(InvalidPath):
        await subject.sandbox.read_file("tree")
    with pytest.raises(InvalidPath):
        await subject.sandbox.list_files("tree/leaf.txt")
    with pytest.raises(InvalidPath):  # a file cannot replace a directory
        await subject.sandbox.write_file("tree", b"x")
    with pytest.raises(InvalidPath):  # nor have a file as its parent
        await subject.sandbox.write_file("tree/leaf.txt/under", b"x")
    assert await subject.sandbox.read_file("tree/leaf.txt") == b"x"


async def test_a_file_over_the_cap_is_refused_and_nothing_is_written(subject: Subject) -> None:
    with pytest.raises(FileTooLarge):
        await subject.sandbox.write_file("big.bin", b"\x00" * (MAX_FILE_BYTES + 1))
    with pytest.raises(WorkspaceFileNotFound):
        await subject.sandbox.read_file("big.bin")
    entry = await subject.sandbox.write_file("big.bin", b"\x00" * MAX_FILE_BYTES)  # at the cap: fine
    assert entry.size == MAX_FILE_BYTES
    assert len(await subject.sandbox.read_file("big.bin")) == MAX_FILE_BYTES
