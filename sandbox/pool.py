"""A warm pool: default sandboxes started ahead of time, handed out in milliseconds."""

from __future__ import annotations

import asyncio
import collections
import logging

from sandbox.base import Sandbox, SandboxBackend, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable

__all__ = ["SandboxPool"]

log = logging.getLogger(__name__)


class SandboxPool:
    """Keeps `size` ready sandboxes of the default spec; other specs are created cold."""

    def __init__(self, backend: SandboxBackend, config: SandboxConfig) -> None:
        self.backend = backend
        self.config = config
        size = config.pool_size
        self.size = max(0, size)
        self._ready: collections.deque[Sandbox] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    @property
    def ready(self) -> int:
        return len(self._ready)

    def pooled_ids(self) -> set[str]:
        return {s.info.session_id for s in self._ready}

    def start(self) -> None:
        if self._task is None and self.size:
            self._task = asyncio.create_task(self._refill_forever(), name="sandbox-pool-refill")
            self._wake.set()

    def matches(self, spec: SandboxSpec) -> bool:
        """Only the default spec (image, limits, closed network) can come from the pool."""
        config = self.config
        return (
            spec.network == "none"
            and spec.image in (None, config.image)
            and spec.limits == config.default_limits
        )

    async def acquire(self, spec: SandboxSpec) -> Sandbox:
        """A ready sandbox for `spec`, from the pool when it matches, else freshly created."""
        self.config.check_spec(spec)
        if self.size and self.matches(spec):
            while self._ready:
                sandbox = self._ready.popleft()
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
        """Wait until the pool holds `size` sandboxes (for start-up and tests)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self._ready) < self.size:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"pool has {len(self._ready)}/{self.size} sandboxes")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._ready:
            await self.backend.destroy(self._ready.popleft().info.session_id)

    async def _refill_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self._ready) < self.size:
                try:
                    spec = SandboxSpec(limits=self.config.default_limits)
                    self._ready.append(await self.backend.create(spec, pooled=True))  # type: ignore[call-arg]
                    self.failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.failures += 1
                    log.exception("could not pre-start a pool sandbox")
                    await asyncio.sleep(min(30.0, 0.5 * 2**self.failures))
