"""When and how a call is tried again: 503 and 429 answers and refused connections, with jittered backoff."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from toolserver.client.errors import ApiError

__all__ = ["RetryPolicy"]

_RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `attempts` tries within `max_total_s`; waits grow from `initial_s` to `max_wait_s`, or Retry-After.

    Retried: 503 (a node or backend not ready), 429 (a namespace cap; a stream slot or a session may free up) and
    connections that were refused (the request never reached the server). Never retried: timeouts of a request that
    may have run, and every other error. `RetryPolicy(attempts=1)` turns retries off.
    """

    attempts: int = 4
    initial_s: float = 0.25
    max_wait_s: float = 4.0
    max_total_s: float = 30.0

    def retrying(self) -> Retrying:
        """A tenacity controller for synchronous calls."""
        return Retrying(
            stop=self._stop(), wait=self._wait, retry=retry_if_exception(_worth_another_try), reraise=True
        )

    def async_retrying(self) -> AsyncRetrying:
        """A tenacity controller for coroutine calls."""
        return AsyncRetrying(
            stop=self._stop(), wait=self._wait, retry=retry_if_exception(_worth_another_try), reraise=True
        )

    def _stop(self) -> stop_base:
        return stop_after_attempt(max(1, self.attempts)) | stop_after_delay(self.max_total_s)

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when the server sent one, else jittered exponential backoff."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApiError) and error.retry_after_s is not None:
            return min(error.retry_after_s, self.max_wait_s)
        return float(wait_exponential_jitter(initial=self.initial_s, max=self.max_wait_s)(state))


def _worth_another_try(error: BaseException) -> bool:
    if isinstance(error, ApiError):
        return error.status_code in _RETRIED_STATUSES
    return isinstance(error, httpx.ConnectError)
