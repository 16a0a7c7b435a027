"""Alembic's environment for the registry's schema.

`registry.migrations.ensure_schema` passes its open connection, inside its transaction and lock, in
`config.attributes["connection"]`; Alembic's own commands (`alembic_config(url)`) pass `sqlalchemy.url`.
Offline (`--sql`) mode is not supported: the baseline inspects the database to adopt an older one.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import registry.models  # noqa: F401  (the tables must be in the metadata before a comparison)
from registry.migrations import context_options


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **context_options())
    with context.begin_transaction():
        context.run_migrations()


def _run_on_url(url: str) -> None:
    # The registry's own engine: on SQLite it sets the pragmas and begins transactions itself.
    from registry.db import Database

    with Database(url, ensure_schema=False) as db, db.engine.connect() as connection:
        _run(connection)
        connection.commit()


if context.is_offline_mode():
    raise RuntimeError(
        "the registry's migrations inspect the database: offline (--sql) mode is not supported"
    )
_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    _url = context.config.get_main_option("sqlalchemy.url")
    if not _url:
        raise RuntimeError("no database: give alembic_config(url) or pass a connection in config.attributes")
    _run_on_url(_url)
