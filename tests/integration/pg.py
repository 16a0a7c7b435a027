"""A real PostgreSQL for tests: the server at `TOOLSERVER_TEST_POSTGRES_URL`, else a throwaway local cluster.

The throwaway cluster lives in a temporary directory (data and unix socket), listens on 127.0.0.1 on a free
port, and is stopped and deleted afterwards. PostgreSQL refuses to run as root, so as root its commands run
as the `postgres` system user. Each test then gets its own schema (`fresh_schema`), dropped at the end.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from registry import Database

POSTGRES_URL_ENV = "TOOLSERVER_TEST_POSTGRES_URL"
DATABASE = "toolserver_test"


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a PostgreSQL database the tests may create schemas in."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        yield url
        return
    bindir = _find_bindir()
    if bindir is None:
        pytest.skip(f"no PostgreSQL server binaries (initdb, pg_ctl) found; or set {POSTGRES_URL_ENV}")
    as_root = os.geteuid() == 0
    base = "/tmp" if os.path.isdir("/tmp") else None  # short, and reachable by the postgres user
    tmp = Path(tempfile.mkdtemp(prefix="tspg-", dir=base))
    data = tmp / "data"
    try:
        if as_root:
            shutil.chown(tmp, user="postgres", group="postgres")
        _run(as_root, tmp, bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync", "--no-instructions")  # fmt: skip
        port = _free_port()
        server_options = (
            f"-h 127.0.0.1 -p {port} -k {tmp} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run(as_root, tmp, bindir / "pg_ctl", "-D", data, "-l", tmp / "server.log", "-w", "-t", "60",
             "-o", server_options, "start")  # fmt: skip
        try:
            admin = Database(f"postgresql://postgres@127.0.0.1:{port}/postgres", ensure_schema=False)
            with admin, admin.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
            yield f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
        finally:
            _run(as_root, tmp, bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new empty schema in the database at `url`; yields a URL whose connections use only that schema."""
    schema = "test_" + secrets.token_hex(6)
    db = Database(url, ensure_schema=False)  # for its engine: the same driver choice the tests will get
    admin = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        scoped = db.url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        db.close()


def _find_bindir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(as_root: bool, cwd: Path, *command: str | Path) -> None:
    argv = [str(part) for part in command]
    if as_root:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    # Output goes to a file, not a pipe: the server pg_ctl starts would hold a pipe open forever.
    with open(cwd / "commands.log", "ab") as log:
        done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False)
    if done.returncode != 0:
        output = (cwd / "commands.log").read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{' '.join(argv)} failed with exit code {done.returncode}:\n{output}")
