"""Ray actors as the project uses them: named detached singletons, found again by name, called with our errors.

handle = start_named_actor(RunSchedulerActor, "runs", "toolserver", settings, max_concurrency=1000)
handle = find_actor("runs", "toolserver")            # None when no such actor lives
kill_named_actor("runs", "toolserver")               # True when there was one
result = await call_actor(handle.recover.remote(), "the run scheduler")
"""

from __future__ import annotations

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
    "start_named_actor",
]

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
        return await ref
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ToolServerError):
            raise cause from None
        raise
    except RayActorError as exc:
        raise Unavailable(f"{what} is lost: {type(exc).__name__}", **details) from None


class ActorClient:
    """Forwards method calls; our errors come back as themselves, a dead actor as Unavailable."""

    def __init__(self, handle: Any, what: str, **details: Any) -> None:
        self._handle = handle
        self._what = what
        self._details = details

    def __getattr__(self, method: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any) -> Any:
            return await call_actor(self._handle.call.remote(method, *args), self._what, **self._details)

        return call
