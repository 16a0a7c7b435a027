"""Errors of the registry layer.

    RuntimeFailure (foundation.errors)
    └── RegistryError               the database failed or holds something this code cannot use
        ├── SchemaTooNew            the database was written by a newer toolserver
        └── RegistryUnavailable     the database cannot be reached or stayed locked (also an Unavailable)
    Conflict (foundation.errors)
    └── WriteConflict               a write hit a unique constraint (a duplicate or a concurrent writer)

Missing rows raise `foundation.errors.NotFound`, duplicates `foundation.errors.Conflict`. `translate_errors`
turns the database driver's errors into these.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from foundation.errors import Conflict, RuntimeFailure, Unavailable

__all__ = ["RegistryError", "RegistryUnavailable", "SchemaTooNew", "WriteConflict", "translate_errors"]


class RegistryError(RuntimeFailure):
    """The registry's database failed in a way the caller could not prevent."""

    type = "registry_error"


class SchemaTooNew(RegistryError):
    """The database schema is newer than this code understands."""

    type = "schema_too_new"

    def __init__(self, found: int | str, supported: int | str) -> None:
        super().__init__(
            f"the registry database has schema version {found}, but this toolserver supports up to "
            f"version {supported}; upgrade toolserver (or point TOOLSERVER_DATABASE_URL at another database)",
            found=found,
            supported=supported,
        )
        self.found = found
        self.supported = supported


class RegistryUnavailable(RegistryError, Unavailable):
    """The database is down, unreachable, or stayed locked past the busy timeout."""

    type = "registry_unavailable"


class WriteConflict(Conflict):
    """A write violated a unique constraint; stores retry these when a concurrent writer is the cause."""

    type = "conflict"


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors become registry errors: a unique violation a WriteConflict, a lost database a 503."""
    try:
        yield
    except IntegrityError as exc:
        raise WriteConflict("the write conflicts with an existing record") from exc
    except (OperationalError, InterfaceError) as exc:
        raise RegistryUnavailable(f"the registry database is unavailable: {_reason(exc)}") from exc
    except DBAPIError as exc:
        raise RegistryError(f"the registry database failed: {_reason(exc)}") from exc


def _reason(exc: DBAPIError) -> str:
    # The driver's message without the SQL statement and parameters SQLAlchemy appends.
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__
