"""What the envd services share: the caller of an RPC, and our errors as Connect errors."""

from __future__ import annotations

import logging
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from foundation.errors import ToolServerError
from toolserver.e2b._auth import sandbox_caller
from toolserver.e2b.errors import connect_code_name
from toolserver.service.principal import Principal

__all__ = ["rpc_caller", "rpc_error"]

log = logging.getLogger(__name__)


async def rpc_caller(auth: Any, ctx: Any) -> tuple[Principal, str]:
    """The caller and sandbox of an RPC, from its headers; a Connect error when they do not check out."""
    headers = {str(k).lower(): str(v) for k, v in ctx.request_headers.items()}
    try:
        return await sandbox_caller(auth, headers)
    except ToolServerError as exc:
        raise rpc_error(exc) from None


def rpc_error(exc: BaseException) -> ConnectError:
    """A Connect error for one of ours (its status picks the code); anything else is INTERNAL, logged."""
    if isinstance(exc, ConnectError):
        return exc
    if isinstance(exc, ToolServerError):
        return ConnectError(Code[connect_code_name(exc)], exc.message)
    log.exception("envd call failed", exc_info=exc)
    return ConnectError(Code.INTERNAL, f"internal error ({type(exc).__name__})")
