"""The validation and import pools are shared by every tenant: each namespace gets only a few slots on them.

Before: one tenant's calls, each using its 2 s validation budget, queued on the two validation threads and
every other tenant's calls waited behind all of them.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any

import httpx

from foundation.errors import QuotaExceeded
from foundation.schema.limits import MAX_VALIDATIONS_PER_NAMESPACE, MAX_WAITING_VALIDATIONS, _SharedPool
from tests.unit.test_validation_limits import SOURCE, anyof_chain, tool


async def test_a_namespace_past_its_slots_waits_then_is_refused_and_others_go_first():
    pool = _SharedPool("validation", 2, 2, 3)
    gate = threading.Event()
    order: list[str] = []

    def work(name: str) -> str:
        order.append(name)
        if name.startswith("a"):
            gate.wait(10)
        return name

    flood = [asyncio.create_task(pool.run("a", functools.partial(work, f"a{i}"))) for i in range(6)]
    await asyncio.sleep(0.2)
    refused = [task for task in flood if task.done()]
    assert len(refused) == 1 and isinstance(refused[0].exception(), QuotaExceeded)
    other = asyncio.create_task(pool.run("b", functools.partial(work, "b")))
    await asyncio.sleep(0.1)
    gate.set()
    assert await other == "b"
    results = await asyncio.gather(*(t for t in flood if t not in refused))
    assert sorted(results) == [f"a{i}" for i in range(5)]
    assert order.index("b") < order.index("a2")  # b queued behind a's two running calls only
    assert pool._shares == {}  # every slot came back


async def test_cancelled_waiters_give_their_slots_back():
    pool = _SharedPool("validation", 1, 1, 4)
    gate = threading.Event()
    running = asyncio.create_task(pool.run("a", functools.partial(gate.wait, 10)))
    waiters = [asyncio.create_task(pool.run("a", functools.partial(time.sleep, 0))) for _ in range(4)]
    await asyncio.sleep(0.1)
    for waiter in waiters:
        waiter.cancel()
    gate.set()
    assert await running is True
    assert await pool.run("a", lambda: "again") == "again"
    assert pool._shares == {}


async def test_one_tenants_flood_of_costly_calls_does_not_hold_up_another(two_tenants):
    body = {"name": "chain", "kind": "python", "source": SOURCE, "parameters": anyof_chain(30)}
    assert (await two_tenants["a"].post("/v1/tools", json=body)).status_code == 201
    cheap = tool("cheap", {"type": "integer"})
    assert (await two_tenants["b"].post("/v1/tools", json=cheap)).status_code == 201
    count = MAX_VALIDATIONS_PER_NAMESPACE + MAX_WAITING_VALIDATIONS + 3
    flood = [
        asyncio.create_task(two_tenants["a"].post("/v1/tools/chain/call", json={"arguments": {"x": 1}}))
        for _ in range(count)
    ]
    for _ in range(100):  # the refusals answer at once, once every request has reached the pool
        await asyncio.sleep(0.1)
        if sum(task.done() for task in flood) >= 3:
            break
    refused: list[httpx.Response] = [task.result() for task in flood if task.done()]
    assert len(refused) == 3, [r.text for r in refused]
    for response in refused:
        assert response.status_code == 429 and response.json()["error"]["type"] == "quota_exceeded"
    answered = await two_tenants["b"].post("/v1/tools/cheap/call", json={"arguments": {"x": "no"}})
    assert answered.status_code == 422 and answered.json()["error"]["field"] == "arguments.x"
    still_waiting = [task for task in flood if not task.done()]
    assert len(still_waiting) >= MAX_WAITING_VALIDATIONS  # b answered before a's backlog, not after it
    for task in still_waiting:
        task.cancel()
    await asyncio.gather(*still_waiting, return_exceptions=True)
    again: Any = await two_tenants["a"].post("/v1/tools/chain/call", json={"arguments": {"x": 1}})
    assert again.status_code == 422  # a's slots came back: its next call is checked (and over budget)
