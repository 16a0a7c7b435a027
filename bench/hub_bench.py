"""Messages per second through an environment's hub, with 10 and 100 subscribed agents.

    python -m bench.hub_bench [--messages 2000] [--publishers 8]

Every message is a broadcast on a topic all agents subscribe to, so each one is stored once (the
registry's SQLite file) and delivered to every agent's inbox. Rows: the hub in this process with an
in-memory store (the hub's own cost), with the SQLite store (plus persistence), and as the Ray actor
that the server uses (plus a Ray call per publish). Inboxes are drained as the run goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

from agent_core.environment import Hub, InMemoryEnvironmentStore, Message, SqlEnvironmentStore
from bench._stats import print_table
from registry import Database

AGENT_COUNTS = (10, 100)


async def _fill(hub: Any, agents: int) -> list[str]:
    names = [f"agent{i}" for i in range(agents)]
    for name in names:
        await hub.register_agent(name, "member")
    await hub.subscribe("room", role="member")
    return names


async def _publish_all(hub: Any, names: list[str], messages: int, publishers: int) -> float:
    per = messages // publishers

    async def publisher(p: int) -> None:
        for i in range(per):
            await hub.publish(Message(f"pub{p}", f"message {i} from {p}", topic="room"))
            if i % 50 == 49:  # keep inboxes drained, as agents reading them would
                await asyncio.gather(*(hub.read(n) for n in names[:5]))

    started = time.perf_counter()
    await asyncio.gather(*(publisher(p) for p in range(publishers)))
    elapsed = time.perf_counter() - started
    for name in names:
        await hub.read(name)
    return (per * publishers) / elapsed


async def _local(store: str, agents: int, messages: int, publishers: int, tmp: str) -> float:
    if store == "memory":
        hub = Hub("bench", f"mem{agents}", InMemoryEnvironmentStore(), inbox_limit=1_000_000)
    else:
        db = Database(f"sqlite:///{tmp}/hub-{agents}.db")
        hub = Hub("bench", f"sql{agents}", SqlEnvironmentStore(db), inbox_limit=1_000_000)
    names = await _fill(hub, agents)
    rate = await _publish_all(hub, names, messages, publishers)
    await hub.close()
    return rate


async def _ray(agents: int, messages: int, publishers: int, tmp: str) -> float:
    from agent_core.environment.actors import start_hub_actor, stop_hub_actor

    hub = await start_hub_actor(
        "bench", f"ray{agents}", f"sqlite:///{tmp}/ray-{agents}.db", inbox_limit=1_000_000
    )
    try:
        names = await _fill(hub, agents)
        return await _publish_all(hub, names, messages, publishers)
    finally:
        stop_hub_actor("bench", f"ray{agents}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000, help="messages per row (default 2000)")
    parser.add_argument("--publishers", type=int, default=8, help="concurrent publishers (default 8)")
    parser.add_argument("--skip-ray", action="store_true", help="only the in-process rows")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hubbench-") as tmp:
        for agents in AGENT_COUNTS:
            for store in ("memory", "sqlite"):
                rate = asyncio.run(_local(store, agents, args.messages, args.publishers, tmp))
                rows.append(
                    [
                        f"in process, {store} store",
                        agents,
                        args.messages,
                        f"{rate:,.0f}",
                        f"{rate * agents:,.0f}",
                    ]
                )
        if not args.skip_ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, namespace="toolserver", logging_level="ERROR")
            try:
                for agents in AGENT_COUNTS:
                    rate = asyncio.run(_ray(agents, args.messages, args.publishers, tmp))
                    rows.append(
                        [
                            "hub Ray actor, sqlite",
                            agents,
                            args.messages,
                            f"{rate:,.0f}",
                            f"{rate * agents:,.0f}",
                        ]
                    )
            finally:
                ray.shutdown()
    print_table(
        f"Environment hub throughput ({os.cpu_count()} cores; {args.publishers} concurrent publishers; broadcast)",
        ["hub", "agents", "messages", "messages/s", "deliveries/s"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
