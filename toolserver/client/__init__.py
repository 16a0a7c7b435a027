"""The Python SDK: typed, sync (`Client`) and async (`AsyncClient`) with the same methods.

    from toolserver import Client

    with Client() as ts, ts.session() as s:      # URL and key: TOOLSERVER_URL / TOOLSERVER_API_KEY, else `toolserver up`'s
        s.shell("cd /tmp && export X=1")
        print(s.shell("echo $X; pwd").output)    # 1 /tmp
        s.python("x = 40")
        print(s.python("x + 2").result)          # 42

Answers are the models of `toolserver.api`; errors are the typed `ApiError`s of `toolserver.client.errors`; 503 and
429 answers are retried with backoff (`RetryPolicy`).
"""

from toolserver.client._events import RunEvent
from toolserver.client._request import Request, default_connection
from toolserver.client._retry import RetryPolicy
from toolserver.client.aio import AsyncClient, AsyncSession
from toolserver.client.errors import (
    ApiError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    QuotaExceededError,
    ServerError,
    SessionLostError,
    UnauthorizedError,
    UnavailableError,
    ValidationError,
)
from toolserver.client.sync import Client, Session

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncSession",
    "BadRequestError",
    "Client",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "Request",
    "RetryPolicy",
    "RunEvent",
    "ServerError",
    "SessionLostError",
    "Session",
    "UnauthorizedError",
    "UnavailableError",
    "ValidationError",
    "default_connection",
]
