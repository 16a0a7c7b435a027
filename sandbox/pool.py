"""A warm pool: default sandboxes started ahead of time, handed out in milliseconds."""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import replace

from sandbox.base import Runtime, Sandbox, SandboxBackend, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable

__all__ = ["SandboxPool"]

log = logging.getLogger(__name__)


class SandboxPool:
    """Keeps `size` ready sandboxes of the default spec under each allowed runtime; other specs are created cold."""

    def __init__(self, backend: SandboxBackend, config: SandboxConfig) -> None:
        self.backend = backend
        self.config = config
        size = config.pool_size
        self.size = max(0, size)
        self._ready: dict[Runtime, collections.deque[Sandbox]] = {
            runtime: collections.deque() for runtime in config.runtimes
        }
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    @property
    def ready(self) -> int:
        """Ready sandboxes, all runtimes together."""
        return sum(len(queue) for queue in self._ready.values())

    def ready_by_runtime(self) -> dict[str, int]:
        """Ready sandboxes per runtime."""
        return {runtime: len(queue) for runtime, queue in self._ready.items()}

    def pooled_ids(self) -> set[str]:
        return {s.info.session_id for queue in self._ready.values() for s in queue}

    def start(self) -> None:
        if self._task is None and self.size:
            self._task = asyncio.create_task(self._refill_forever(), name="sandbox-pool-refill")
            self._wake.set()

    def matches(self, spec: SandboxSpec) -> bool:
        """Only the default spec (image, limits, closed network), under any allowed runtime, comes from the pool."""
        config = self.config
        return (
            spec.network == "none"
            and not spec.volumes
            and spec.image in (None, config.image)
            and spec.limits == config.default_limits
            and config.runtime_of(spec) in self._ready
        )

    async def acquire(self, spec: SandboxSpec) -> Sandbox:
        """A ready sandbox for `spec`, from the pool when it matches, else freshly created."""
        self.config.check_spec(spec)
        spec = replace(spec, runtime=self.config.runtime_of(spec))
        if self.size and self.matches(spec):
            ready = self._ready[self.config.runtime_of(spec)]
            while ready:
                sandbox = ready.popleft()
                self._wake.set()
                try:
                    await sandbox.ping()  # type: ignore[attr-defined]
                except SandboxUnavailable:
                    await self.backend.destroy(sandbox.info.session_id)
                    continue
                sandbox.set_owner(spec.owner)  # type: ignore[attr-defined]
                return sandbox
            self._wake.set()
        return await self.backend.create(spec)

    async def wait_full(self, timeout_s: float = 60.0) -> None:
        """Wait until the pool holds `size` sandboxes of every runtime (for start-up and tests)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(len(queue) < self.size for queue in self._ready.values()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"pool has {self.ready_by_runtime()} of {self.size} sandboxes per runtime")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for queue in self._ready.values():
            while queue:
                await self.backend.destroy(queue.popleft().info.session_id)

    async def _refill_forever(self) -> None:
        loop = asyncio.get_running_loop()
        retry_at: dict[Runtime, float] = {}  # a runtime that failed waits; the others keep filling
        failures: dict[Runtime, int] = {}
        while True:
            await self._wake.wait()
            self._wake.clear()
            while missing := [r for r, queue in self._ready.items() if len(queue) < self.size]:
                now = loop.time()
                due = [r for r in missing if retry_at.get(r, 0.0) <= now]
                if not due:
                    await asyncio.sleep(min(retry_at[r] for r in missing) - now)
                    continue
                # The emptiest first (the default on a tie): every runtime soon has a warm sandbox.
                runtime = min(due, key=lambda r: len(self._ready[r]))
                try:
                    spec = SandboxSpec(limits=self.config.default_limits, runtime=runtime)
                    sandbox = await self.backend.create(spec, pooled=True)  # type: ignore[call-arg]
                    self._ready[runtime].append(sandbox)
                    failures[runtime] = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures[runtime] = failures.get(runtime, 0) + 1
                    log.exception("could not pre-start a pool sandbox (runtime %s)", runtime)
                    retry_at[runtime] = loop.time() + min(30.0, 0.5 * 2 ** failures[runtime])
                self.failures = sum(failures.values())
