"""ActorClient retries a lost singleton while Ray restarts it, and passes the actor's own errors through."""

from __future__ import annotations

from typing import Any

import pytest
from ray.exceptions import ActorDiedError

from foundation.actors import ActorClient
from foundation.errors import NotFound, Unavailable


class _Ref:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def __await__(self) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome
        yield  # a generator, so that `await` works


class _Handle:
    """Answers each `call.remote` with the next outcome."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.call = self

    def remote(self, method: str, *args: Any) -> _Ref:
        self.calls += 1
        return _Ref(self.outcomes.pop(0))


async def test_a_lost_actor_is_retried_until_it_answers() -> None:
    handle = _Handle(ActorDiedError(), ActorDiedError(), {"ok": True})
    assert await ActorClient(handle, "the run scheduler", retry_s=30).submit("ns", "run") == {"ok": True}
    assert handle.calls == 3


async def test_past_the_window_a_lost_actor_is_unavailable_naming_it() -> None:
    handle = _Handle(*[ActorDiedError()] * 50)
    with pytest.raises(Unavailable, match="the run scheduler is lost"):
        await ActorClient(handle, "the run scheduler", retry_s=0.5).submit("ns", "run")
    assert 2 <= handle.calls < 50
    without_retry = _Handle(ActorDiedError())
    with pytest.raises(Unavailable):
        await ActorClient(without_retry, "the run scheduler").submit("ns", "run")
    assert without_retry.calls == 1


async def test_the_actors_own_errors_are_not_retried() -> None:
    for error in (NotFound("no such run"), Unavailable("no sandboxes here")):
        handle = _Handle(error)
        with pytest.raises(type(error)):
            await ActorClient(handle, "the run scheduler", retry_s=30).submit("ns", "run")
        assert handle.calls == 1
