"""Caps on the work one tenant's request makes a shared server do, and where that work runs.

Schemas, OpenAPI documents and regexes come from tenants; evaluating them must cost a bounded amount however
they are written (invariant 7). The caps here are constants, not settings: each is far above what a real tool
needs and far below what stalls a replica. The work itself runs on small thread pools of its own, so a slow
import or validation neither blocks the event loop nor takes the threads that registry calls use.

The pools are shared by every tenant of the process, so each namespace may have only a few pieces of work
queued or running on each (`MAX_VALIDATIONS_PER_NAMESPACE`, `MAX_IMPORTS_PER_NAMESPACE`); its further requests
wait for one of its own slots, a few of them (`MAX_WAITING_*`), and past those a request is a 429 at once.
Another tenant's work so queues behind at most that many of each namespace, never behind one's backlog.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from foundation.errors import PayloadTooLarge, QuotaExceeded

__all__ = [
    "IMPORT_DEADLINE_S",
    "MAX_EXPANDED_SCHEMA_BYTES",
    "MAX_IMPORTS_PER_NAMESPACE",
    "MAX_IMPORT_OPERATIONS",
    "MAX_REGEX_WORK",
    "MAX_SCHEMA_BYTES",
    "MAX_UNIQUE_ITEMS",
    "MAX_VALIDATIONS_PER_NAMESPACE",
    "MAX_VALIDATION_STEPS",
    "MAX_WAITING_IMPORTS",
    "MAX_WAITING_VALIDATIONS",
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

MAX_VALIDATIONS_PER_NAMESPACE = 2  # queued or running, per process: as many as the pool has threads
MAX_IMPORTS_PER_NAMESPACE = 1  # the import pool has one thread, and an import may take its 20 s
MAX_WAITING_VALIDATIONS = 16  # a namespace's further calls wait on the event loop, holding their arguments
MAX_WAITING_IMPORTS = 2

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


class _Share:
    """One namespace's place on a pool: how many of its calls hold a slot, and who waits for one."""

    def __init__(self) -> None:
        self.running = 0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()


class _SharedPool:
    """A thread pool on which each namespace holds at most `per_namespace` slots (queued or running).

    Calls past that wait on the event loop, outside the pool's queue, for one of their own namespace's slots;
    past `max_waiting` waiting calls a namespace's call is a 429 at once. The pool's queue so holds at most
    `per_namespace` calls of each namespace, and a tenant's calls never queue behind another's backlog.
    """

    def __init__(self, what: str, workers: int, per_namespace: int, max_waiting: int) -> None:
        self.what = what
        self.per_namespace = per_namespace
        self.max_waiting = max_waiting
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"tenant-{what}")
        self._shares: dict[str, _Share] = {}
        self._lock = threading.Lock()  # slots are released from the pool's threads

    async def run(self, namespace: str, call: Callable[[], _T]) -> _T:
        await self._acquire(namespace)
        try:
            future = self._pool.submit(call)
        except BaseException:
            self._release(namespace)
            raise
        # The slot is freed when the work ends, not when its caller stops waiting: a cancelled request's
        # validation still holds its thread until it has run out.
        future.add_done_callback(lambda _: self._release(namespace))
        return await asyncio.wrap_future(future)

    async def _acquire(self, namespace: str) -> None:
        with self._lock:
            share = self._shares.setdefault(namespace, _Share())
            if share.running < self.per_namespace:
                share.running += 1
                return
            if len(share.waiting) >= self.max_waiting:
                raise QuotaExceeded(
                    f"this namespace has {share.running + len(share.waiting)} {self.what}s queued or running "
                    f"on this server, the most it may; retry when some have answered",
                    limit=self.per_namespace + self.max_waiting,
                )
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            share.waiting.append(waiter)
        try:
            await waiter  # resolved by `_release` handing this call the slot it frees
        except asyncio.CancelledError:
            with self._lock:
                handed = waiter not in share.waiting
                if not handed:
                    share.waiting.remove(waiter)
            if handed and waiter.done() and not waiter.cancelled():
                self._release(namespace)  # it was handed a slot just as it was cancelled
            raise

    def _release(self, namespace: str) -> None:
        with self._lock:
            share = self._shares[namespace]
            while share.waiting:
                waiter = share.waiting.popleft()
                try:
                    waiter.get_loop().call_soon_threadsafe(self._hand_over, namespace, waiter)
                    return  # the slot passes to the waiter
                except RuntimeError:  # its event loop has closed
                    continue
            share.running -= 1
            if share.running <= 0:
                del self._shares[namespace]

    def _hand_over(self, namespace: str, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # cancelled meanwhile: the slot goes on to the next
            self._release(namespace)
        else:
            waiter.set_result(None)


_IMPORTS = _SharedPool("import", 1, MAX_IMPORTS_PER_NAMESPACE, MAX_WAITING_IMPORTS)
_VALIDATIONS = _SharedPool("validation", 2, MAX_VALIDATIONS_PER_NAMESPACE, MAX_WAITING_VALIDATIONS)


async def run_import(namespace: str, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run an import's parsing and expansion on the import pool, off the event loop; 429 past the
    namespace's share of it."""
    return await _IMPORTS.run(namespace, functools.partial(fn, *args, **kwargs))


async def run_validation(namespace: str, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run a schema check or an argument validation on the validation pool, off the event loop; 429 past the
    namespace's share of it."""
    return await _VALIDATIONS.run(namespace, functools.partial(fn, *args, **kwargs))
