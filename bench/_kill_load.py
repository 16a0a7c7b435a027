"""The steady load of the node-loss benchmark: one loop per service, every call timed, and the outage it saw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench._stats import percentiles

__all__ = [
    "SERVICES",
    "Call",
    "Load",
    "ok_response",
    "finished",
    "outage",
    "slow_bounds",
    "session_on",
    "lost_session_codes",
]

SERVICES = ("healthz", "livez", "shell", "memory", "runs", "environments")
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Call:
    service: str
    t0: float
    t1: float
    ok: bool


async def ok_response(
    http: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> httpx.Response | None:
    """The response when it is a success, else None; long timeout: calls for a restarting singleton are held."""
    try:
        response = await http.request(method, path, timeout=60, **kwargs)
    except httpx.HTTPError:
        return None
    return response if response.status_code < 300 else None


class Load:
    """Each service in its own loop, every `interval` s; every call is recorded with its times and outcome."""

    def __init__(self, http: httpx.AsyncClient, run_session: str, interval: float) -> None:
        self.http, self.run_session, self.interval = http, run_session, interval
        self.shell_sessions: list[str] = []
        self.calls: list[Call] = []
        self.round = 0
        self.runs: dict[int, list[str]] = {}
        self.memories: dict[int, dict[str, set[str]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def _healthz(self, i: int) -> bool:
        return await ok_response(self.http, "GET", "/healthz") is not None

    async def _livez(self, i: int) -> bool:
        return await ok_response(self.http, "GET", "/livez") is not None

    async def _shell(self, i: int) -> bool:
        session = self.shell_sessions[i % len(self.shell_sessions)]
        answer = await ok_response(
            self.http, "POST", f"/v1/sessions/{session}/shell", json={"command": "echo beat"}
        )
        return answer is not None and answer.json()["output"].strip() == "beat"

    async def _memory(self, i: int) -> bool:
        scope, text = f"shared:r{self.round}x{i // 90}", f"note {i}"  # a listing shows a scope's newest 100
        if await ok_response(self.http, "POST", f"/v1/memory/{scope}", json={"text": text}) is None:
            return False
        self.memories.setdefault(self.round, {}).setdefault(scope, set()).add(text)
        return True

    async def _runs(self, i: int) -> bool:
        body = {"agent": "quick", "task": f"beat {i}", "session_id": self.run_session}
        started = await ok_response(self.http, "POST", "/v1/runs", json=body)
        if started is None:
            return False
        run_id = started.json()["id"]
        self.runs.setdefault(self.round, []).append(run_id)
        return await finished(self.http, run_id, 90.0) == "succeeded"

    async def _environments(self, i: int) -> bool:
        message = {"content": f"beat {i}", "recipients": ["echo"]}
        if await ok_response(self.http, "POST", "/v1/environments/keeper/messages", json=message) is None:
            return False
        return (
            await ok_response(self.http, "POST", "/v1/environments/keeper/step", json={"steps": 1})
            is not None
        )

    async def _loop(self, service: str, probe: Callable[[int], Awaitable[bool]]) -> None:
        i = 0
        while True:
            t0 = time.monotonic()
            try:
                ok = await probe(i)
            except Exception:
                ok = False
            self.calls.append(Call(service, t0, time.monotonic(), ok))
            i += 1
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        for service in SERVICES:
            probe = getattr(self, f"_{service}")
            self._tasks.append(asyncio.get_running_loop().create_task(self._loop(service, probe)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def finished(http: httpx.AsyncClient, run_id: str, within_s: float) -> str:
    """The run's status once terminal (or the last one seen after `within_s`)."""
    deadline, status = time.monotonic() + within_s, "unknown"
    while time.monotonic() < deadline:
        answer = await ok_response(http, "GET", f"/v1/runs/{run_id}")
        status = answer.json()["status"] if answer is not None else "unknown"
        if status in TERMINAL:
            break
        await asyncio.sleep(0.3)
    return status


def slow_bounds(calls: list[Call], minimum_s: float) -> dict[str, float]:
    """Per service: a call slower than this counts as bad (3 x the warm-up's p90, at least `minimum_s`)."""
    bounds = {}
    for service in SERVICES:
        took = [c.t1 - c.t0 for c in calls if c.service == service and c.ok]
        bounds[service] = max(minimum_s, 3 * percentiles(took)["p90"]) if took else minimum_s * 4
    return bounds


def outage(calls: list[Call], since: float, until: float, slow_s: float) -> dict[str, Any]:
    """Outage (first bad call's start -> the end of the first good answer after the last bad one), counts."""
    mine = sorted((c for c in calls if c.t1 >= since and c.t0 < until), key=lambda c: c.t0)
    bad = [c for c in mine if not c.ok or c.t1 - c.t0 > slow_s]
    found = {"errors": sum(not c.ok for c in mine), "slow": sum(c.ok and c.t1 - c.t0 > slow_s for c in mine)}
    if not bad:
        return {**found, "outage": 0.0, "back": 0.0}
    first, last = max(since, bad[0].t0), bad[-1]
    back = last.t1 if last.ok else next((c.t1 for c in mine if c.ok and c.t0 >= last.t1), None)
    if back is None:
        return {**found, "outage": None, "back": None}
    return {**found, "outage": back - first, "back": back - since}


async def session_on(http: httpx.AsyncClient, node: str) -> str:
    """A session placed on `node` (placement picks the emptiest node: the misses stay until one lands)."""
    misses = []
    try:
        for _ in range(12):
            created = await http.post("/v1/sessions", json={}, timeout=120)
            created.raise_for_status()
            if created.json()["node_id"] == node:
                return str(created.json()["id"])
            misses.append(created.json()["id"])
        raise RuntimeError(f"no session landed on {node[:12]}")
    finally:
        for session in misses:
            await http.delete(f"/v1/sessions/{session}", timeout=60)


async def lost_session_codes(http: httpx.AsyncClient, session: str, since: float) -> dict[int, float]:
    """Seconds after `since` at which a session of the killed node first answered each status (until 410)."""
    seen: dict[int, float] = {}
    while 410 not in seen and time.monotonic() - since < 180:
        try:
            answer = await http.post(f"/v1/sessions/{session}/shell", json={"command": "true"}, timeout=60)
            seen.setdefault(answer.status_code, time.monotonic() - since)
        except httpx.HTTPError:
            pass
        await asyncio.sleep(1.0)
    return seen
