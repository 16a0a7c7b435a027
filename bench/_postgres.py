"""A throwaway PostgreSQL server on loopback for a benchmark run (the registry a cluster shares).

Its data and unix socket live in a temporary directory that is deleted afterwards; as root its commands run
as the `postgres` system user (PostgreSQL refuses root). None when no server binaries are installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["throwaway_postgres"]


@contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    """Yield the URL of a fresh database on a private server, or None without PostgreSQL binaries."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if found is None:
        yield None
        return
    bindir = Path(os.path.realpath(found)).parent
    as_root = os.geteuid() == 0
    tmp = Path(tempfile.mkdtemp(prefix="bpg-", dir="/tmp"))
    data = tmp / "data"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        if as_root:
            shutil.chown(tmp, user="postgres", group="postgres")
        _run(as_root, tmp, bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-h 127.0.0.1 -p {port} -k {tmp} -c fsync=off -c synchronous_commit=off"
        _run(as_root, tmp, bindir / "pg_ctl", "-D", data, "-l", tmp / "log", "-w", "-o", options, "start")
        try:
            _run(
                as_root,
                tmp,
                bindir / "createdb",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "bench",
            )
            yield f"postgresql://postgres@127.0.0.1:{port}/bench"
        finally:
            _run(as_root, tmp, bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(as_root: bool, cwd: Path, *command: str | Path) -> None:
    argv = [str(part) for part in command]
    if as_root:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    # A file, not a pipe: the server pg_ctl starts would hold a pipe open for ever.
    with open(cwd / "commands.log", "ab") as log:
        done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}); see {cwd / 'commands.log'}")
