"""Workspace files in the guest: paths that cannot leave the workspace, and read, write and list on them."""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile

from sbxd_wire import MAX_PAYLOAD, Payload, RequestError, number, send_frame


def file_entry(path: str, st: os.stat_result) -> dict:
    """How a reply describes one file or directory."""
    return {"path": path, "size": st.st_size, "is_dir": stat.S_ISDIR(st.st_mode), "mtime": st.st_mtime}


class Workspace:
    """Workspace-relative paths that cannot leave the workspace, and the file operations on them."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        umask = os.umask(0)
        os.umask(umask)
        self.file_mode = 0o666 & ~umask

    def resolve(self, path: object, *, allow_root: bool = False) -> tuple[str, str]:
        """(normalised relative path, real absolute path); refuses absolute, `..` and symlink escapes."""
        if not isinstance(path, str) or "\x00" in path or len(path) > 4096:
            raise RequestError("invalid_path", "path must be a string without NUL bytes")
        if path.startswith("/"):
            raise RequestError("invalid_path", f"absolute path refused: {path}")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise RequestError("invalid_path", f"'..' refused in {path}")
        if not parts and not allow_root:
            raise RequestError("invalid_path", "a file path is required")
        real = os.path.realpath(os.path.join(self.root, *parts))
        if real != self.root and not real.startswith(self.root + os.sep):
            raise RequestError("invalid_path", f"{path} leaves the workspace through a symlink")
        return "/".join(parts), real

    def read(self, header: dict, sock: socket.socket) -> None:
        """Send a regular file as the reply's payload (the reply is sent here, so it returns None)."""
        _, real = self.resolve(header.get("path"))
        max_bytes = number(header, "max_bytes", MAX_PAYLOAD, MAX_PAYLOAD)
        try:  # NONBLOCK: opening a FIFO must not hang us
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RequestError("not_found", f"no such file: {header['path']}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RequestError("invalid_path", "path ends in a symlink") from None
            raise
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise RequestError("is_directory", f"{header['path']} is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise RequestError("invalid_path", f"{header['path']} is not a regular file")
            if st.st_size > max_bytes:
                raise RequestError("too_large", f"file has {st.st_size} bytes, over the {max_bytes} byte cap")
            os.set_blocking(fd, True)
            send_frame(sock, {"ok": True, "payload": st.st_size, "size": st.st_size})
            with open(fd, "rb", closefd=False) as f:
                sock.sendfile(
                    f, 0, st.st_size
                )  # if the file shrinks meanwhile, the client sees a short frame
        finally:
            os.close(fd)

    def write(self, header: dict, sock: socket.socket) -> dict:
        """Store the request's payload at its path, atomically; the reply describes the file."""
        size = number(header, "payload", 0, MAX_PAYLOAD + 1)
        max_bytes = number(header, "max_bytes", MAX_PAYLOAD, MAX_PAYLOAD)
        if size > max_bytes:  # the host checks this before sending, so no payload is on its way in vain
            raise RequestError("too_large", f"{size} bytes is over the {max_bytes} byte cap")
        payload = Payload(sock, size)
        try:
            rel, real = self.resolve(header.get("path"))
            self._store(rel, real, payload)
        except (RequestError, OSError):
            payload.discard()  # the client may still be sending; unread data would cost it our reply
            raise
        return {"ok": True, **file_entry(rel, os.stat(real))}

    def _store(self, rel: str, real: str, payload: Payload) -> None:
        """Write to a temporary file next to `real` and rename it into place: never a partial file."""
        if os.path.isdir(real):
            raise RequestError("is_directory", f"{rel} is a directory")
        parent = os.path.dirname(real)
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RequestError("invalid_path", f"a parent of {rel} is not a directory") from None
        if os.path.realpath(parent) != parent:  # a symlink appeared since resolve
            raise RequestError("invalid_path", f"{rel} leaves the workspace through a symlink")
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".sbxd-write-")
        try:
            with open(fd, "wb") as f:
                for chunk in payload.chunks():
                    f.write(chunk)
            os.chmod(tmp, self.file_mode)
            os.replace(tmp, real)
        except BaseException as exc:
            os.unlink(tmp)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise RequestError("too_large", f"no room for {rel}: {exc.strerror}") from None
            raise

    def list(self, header: dict) -> dict:
        """The entries of a directory, sorted by path; links are listed, never followed."""
        rel, real = self.resolve(header.get("path", ""), allow_root=True)
        try:
            scan = os.scandir(real)
        except FileNotFoundError:
            raise RequestError("not_found", f"no such directory: {rel or '.'}") from None
        except NotADirectoryError:
            raise RequestError("invalid_path", f"{rel} is not a directory") from None
        entries = []
        with scan:
            for entry in scan:
                st = entry.stat(follow_symlinks=False)  # links are listed as links, never followed
                path = f"{rel}/{entry.name}" if rel else entry.name
                entries.append(file_entry(path, st))
        entries.sort(key=lambda e: e["path"])
        return {"ok": True, "entries": entries}
