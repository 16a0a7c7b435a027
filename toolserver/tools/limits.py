"""Caps on the work one tenant's request makes a shared server do, and where that work runs.

Schemas, OpenAPI documents and regexes come from tenants; evaluating them must cost a bounded amount however
they are written (invariant 7). The caps here are constants, not settings: each is far above what a real tool
needs and far below what stalls a replica. The work itself runs on small thread pools of its own, so a slow
import or validation neither blocks the event loop nor takes the threads that registry calls use.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from toolserver.errors import PayloadTooLarge

__all__ = [
    "IMPORT_DEADLINE_S",
    "MAX_EXPANDED_SCHEMA_BYTES",
    "MAX_IMPORT_OPERATIONS",
    "MAX_REGEX_WORK",
    "MAX_SCHEMA_BYTES",
    "MAX_UNIQUE_ITEMS",
    "MAX_VALIDATION_STEPS",
    "MAX_YAML_CHARS",
    "MAX_YAML_EVENTS",
    "VALIDATION_DEADLINE_S",
    "ExpansionBudget",
    "run_import",
    "run_validation",
]

# Checking a schema against the Draft 2020-12 meta-schema costs about 5 us per byte (0.35 ms per subschema),
# so these two caps bound a registration to about 1.3 s and an import's checks to about 20 s.
MAX_SCHEMA_BYTES = 256 * 1024  # one tool's parameters, as JSON
MAX_EXPANDED_SCHEMA_BYTES = 4 * 1024 * 1024  # all the schemas one OpenAPI import stores, $refs inlined
MAX_IMPORT_OPERATIONS = 2000  # tools one OpenAPI import may create
MAX_YAML_CHARS = 16 * 1024 * 1024
MAX_YAML_EVENTS = 500_000  # YAML nodes and collection ends; about 4 MB of a typical document
IMPORT_DEADLINE_S = 20.0

MAX_VALIDATION_STEPS = 2_000_000  # JSON Schema keyword evaluations for one call's arguments
VALIDATION_DEADLINE_S = 2.0
MAX_REGEX_WORK = 200_000_000  # RE2 instructions x characters per call, about a second at worst
MAX_UNIQUE_ITEMS = 10_000  # longest array `uniqueItems` is checked on

_IMPORTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenant-import")
_VALIDATIONS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tenant-validation")

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ExpansionBudget:
    """Bytes an import may produce and the time it may take; `charge` raises PayloadTooLarge past either."""

    def __init__(
        self, *, max_bytes: int = MAX_EXPANDED_SCHEMA_BYTES, deadline_s: float = IMPORT_DEADLINE_S
    ) -> None:
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s
        self.used = 0
        self._ends_at = time.monotonic() + deadline_s

    def charge(self, size: int) -> None:
        self.used += size
        if self.used > self.max_bytes:
            raise PayloadTooLarge(
                f"the document's schemas expand (with every $ref inlined) to over {self.max_bytes} bytes",
                field="document",
                limit=self.max_bytes,
            )
        self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self._ends_at:
            raise PayloadTooLarge(
                f"the document took over {self.deadline_s:g} s to import; it is too large or too intricate",
                field="document",
            )


async def run_import(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run an import's parsing and expansion on the import pool, off the event loop."""
    return await _run(_IMPORTS, functools.partial(fn, *args, **kwargs))


async def run_validation(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run a schema check or an argument validation on the validation pool, off the event loop."""
    return await _run(_VALIDATIONS, functools.partial(fn, *args, **kwargs))


async def _run(pool: ThreadPoolExecutor, call: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(pool, call)
