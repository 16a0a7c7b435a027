"""An E2B-compatible front: the `e2b` and `e2b-code-interpreter` SDKs work against this server.

Mounted at `/e2b` (both `E2B_API_URL` and `E2B_SANDBOX_URL` point there). It needs the `e2b` extra
(`pip install 'toolserver[e2b]'`), whose generated Connect modules it serves; without it the front answers
501 with that advice, and the server's log says so once at start.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["E2B_PREFIX", "mount_e2b"]

log = logging.getLogger(__name__)
E2B_PREFIX = "/e2b"


def mount_e2b(app: Any) -> None:
    """Mount the front on the FastAPI `app` (whose state holds the services), or its 501 stand-in."""
    try:
        from toolserver.e2b._app import build_e2b_app
    except ImportError as exc:
        log.warning(
            "E2B front not available at %s: %s; install it with pip install 'toolserver[e2b]'",
            E2B_PREFIX,
            exc,
        )
        app.mount(E2B_PREFIX, _missing(str(exc)))
        return
    app.mount(E2B_PREFIX, build_e2b_app(app.state.services, app.state))


def _missing(reason: str) -> Any:
    message = f"the E2B front needs the e2b extra on the server (pip install 'toolserver[e2b]'): {reason}"

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await JSONResponse({"code": 501, "message": message}, status_code=501)(scope, receive, send)

    return answer
