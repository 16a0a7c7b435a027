"""Ray actors as the project uses them: named detached singletons, found again by name, called with our errors.

handle = start_named_actor(RunSchedulerActor, "runs", "toolserver", settings, max_concurrency=1000)
handle = find_actor("runs", "toolserver")            # None when no such actor lives
kill_named_actor("runs", "toolserver")               # True when there was one
result = await call_actor(handle.recover.remote(), "the run scheduler")
client = ActorClient(handle, "the run scheduler", name="runs", namespace="toolserver")
await client.recover()                                # retried while the actor restarts elsewhere

A server singleton survives the loss of its node: it is started with `singleton_options` (Ray restarts it
on a living node), and its `ActorClient` retries calls for `retry_s` while it comes back (looking it up
by name again, in case whoever found it dead started a new one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from foundation.errors import ToolServerError, Unavailable

__all__ = [
    "ActorClient",
    "call_actor",
    "find_actor",
    "kill_named_actor",
    "named_actor_names",
    "singleton_options",
    "start_named_actor",
    "was_restarted",
]

RETRY_S = 45.0
"""How long a singleton's client retries a lost actor: Ray declares a dead node dead after ~15-30 s, then
restarts its actors elsewhere in a few seconds."""

# Variables a detached actor must not inherit from the process that started the cluster (admin and secrets keys).
_BLANKED_ENV = ("TOOLSERVER_API_KEY",)


def start_named_actor(
    cls: type,
    name: str,
    namespace: str,
    *args: Any,
    blank_env: tuple[str, ...] = _BLANKED_ENV,
    **options: Any,
) -> Any:
    """Start `cls` as the detached actor `name` (or return the one already running); no CPU reserved by default.

    `blank_env` names environment variables set empty in the actor's process, so that it never inherits the
    cluster starter's keys; `options` are Ray's actor options (max_concurrency, scheduling_strategy, ...).
    """
    import ray

    env_vars = {**dict.fromkeys(blank_env, ""), **options.pop("env_vars", {})}
    remote_cls: Any = ray.remote(cls)
    return remote_cls.options(
        name=name,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=options.pop("num_cpus", 0),
        runtime_env={"env_vars": env_vars},
        **options,
    ).remote(*args)


def singleton_options(resource: str = "") -> dict[str, Any]:
    """Ray options for a server singleton: restarted on a living node whenever its node is lost.

    With `resource` (a custom Ray resource) it runs only on nodes that offer it; otherwise it prefers the
    calling node (the head, for `toolserver up`: the one node whose loss is fatal anyway) and restarts
    anywhere when that node is gone.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, Any] = {"max_restarts": -1}
    if resource:
        options["resources"] = {resource: 0.001}
    else:
        here = ray.get_runtime_context().get_node_id()
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=here, soft=True)
    return options


def was_restarted() -> bool:
    """Inside an actor: True when Ray restarted it (after its node or process was lost).

    A GCS query; when it fails the actor is taken as new (and says so in its log).
    """
    import warnings

    import ray

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own use of a deprecated id
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception as exc:
        logging.getLogger(__name__).warning("could not tell whether this actor was restarted: %r", exc)
        return False


def find_actor(name: str, namespace: str) -> Any | None:
    """The live named actor's handle, or None when there is none."""
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def kill_named_actor(name: str, namespace: str) -> bool:
    """Kill the named actor if it lives (no restart); True when there was one."""
    import ray

    handle = find_actor(name, namespace)
    if handle is None:
        return False
    ray.kill(handle)
    return True


def named_actor_names(namespace: str, prefix: str = "") -> list[str]:
    """Names of the live named actors of `namespace` that start with `prefix`."""
    import ray

    return [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry.get("namespace") == namespace and entry["name"].startswith(prefix)
    ]


async def call_actor(ref: Awaitable[Any], what: str, **details: Any) -> Any:
    """Await an actor call: our errors come back as themselves, a lost actor as Unavailable naming `what`."""
    try:
        return await _unwrapped(ref)
    except RayActorError as exc:
        raise Unavailable(f"{what} is lost: {type(exc).__name__}", **details) from None


class ActorClient:
    """Forwards method calls; our errors come back as themselves, a dead actor as Unavailable.

    With `retry_s`, a call that finds the actor lost is retried until `retry_s` have passed since the
    first failure (the actor restarts elsewhere meanwhile); with `name`, each retry looks the actor up
    again, so a new actor of that name is found too.
    """

    def __init__(
        self,
        handle: Any,
        what: str,
        *,
        name: str = "",
        namespace: str = "",
        retry_s: float = 0.0,
        **details: Any,
    ) -> None:
        self._handle = handle
        self._what = what
        self._name = name
        self._namespace = namespace
        self._retry_s = retry_s
        self._details = details

    def __getattr__(self, method: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any) -> Any:
            return await self._call(method, args)

        return call

    async def _call(self, method: str, args: tuple[Any, ...]) -> Any:
        deadline: float | None = None
        pause = 0.2
        while True:
            lost: Exception
            try:
                if self._handle is None:
                    raise Unavailable(f"{self._what} is not running", **self._details)
                return await _unwrapped(self._handle.call.remote(method, *args))
            except RayActorError as exc:  # lost, not an error of the call: retried for a while
                lost = Unavailable(f"{self._what} is lost: {type(exc).__name__}", **self._details)
            except Unavailable as exc:
                if self._handle is not None:
                    raise  # the actor's own answer
                lost = exc
            now = time.monotonic()
            deadline = now + self._retry_s if deadline is None else deadline
            if now >= deadline:
                raise lost
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
            if self._name:
                self._handle = (
                    await asyncio.to_thread(find_actor, self._name, self._namespace) or self._handle
                )


async def _unwrapped(ref: Awaitable[Any]) -> Any:
    """Await an actor call; our errors come back as themselves (Ray's own errors pass through)."""
    try:
        return await ref
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ToolServerError):
            raise cause from None
        raise
