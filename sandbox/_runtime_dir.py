"""The sandboxes' runtime directory: created private (0700), and refused when it is not."""

from __future__ import annotations

import os
import stat

from sandbox.errors import RuntimeDirUnsafe

__all__ = ["prepare_runtime_dir"]


def prepare_runtime_dir(path: str) -> None:
    """Create `path` mode 0700, or check that the one there is a directory of ours that no one else may use.

    Its default name (`$TMPDIR/tsbx-<uid>`) is predictable in a shared /tmp: another user could create it
    first, or plant a symlink, and then read or replace the sockets of every sandbox below it.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    euid = os.geteuid()
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory"
    elif st.st_uid != euid:
        problem = f"belongs to uid {st.st_uid}, not to this server's uid {euid}"
    elif st.st_mode & 0o022:
        problem = f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}, must be 0700)"
    else:
        if st.st_mode & 0o077:
            # Ours and writable by no one else, so nothing in it was planted: earlier versions made it
            # 0755, and tightening it keeps their runtime directories usable.
            os.chmod(path, 0o700)
        return
    raise RuntimeDirUnsafe(
        f"the sandbox runtime directory {path} {problem}; remove it, or set TMPDIR to a private"
        " directory of this server's user (the runtime directory is $TMPDIR/tsbx-<uid>)",
        path=path,
    )
