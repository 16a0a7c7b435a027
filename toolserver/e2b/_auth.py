"""Who calls the E2B front: the control API's `X-API-KEY`, a sandbox daemon's access token, the sandbox id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from foundation.errors import Unauthorized, UserError
from toolserver.e2b._keys import from_e2b_key
from toolserver.service.principal import Principal

__all__ = ["KeyCheck", "control_principal", "sandbox_caller", "sandbox_secret"]

_SANDBOX_TOKENS = ("x-access-token", "e2b-traffic-access-token")


async def _principal(auth: object, secret: str) -> Principal:
    header = f"Bearer {from_e2b_key(secret)}"
    hit = auth.cached(header)  # type: ignore[attr-defined]
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    return await asyncio.to_thread(auth.principal, header)  # type: ignore[attr-defined,no-any-return]


async def control_principal(auth: object, headers: Mapping[str, str]) -> Principal:
    """The caller of a control API request: `X-API-KEY` (E2B's header) or `Authorization: Bearer`."""
    secret = headers.get("x-api-key", "").strip()
    if not secret:
        scheme, _, rest = headers.get("authorization", "").partition(" ")
        secret = rest.strip() if scheme.lower() == "bearer" else ""
    if not secret:
        raise Unauthorized("missing API key: set E2B_API_KEY to a toolserver key (or its e2b_ form)")
    return await _principal(auth, secret)


async def sandbox_caller(auth: object, headers: Mapping[str, str]) -> tuple[Principal, str]:
    """The caller of a sandbox daemon request and the sandbox it names (`E2b-Sandbox-Id`).

    The access token the control API handed out with the sandbox is the caller's own key (E2B form), so a
    revoked key stops working here too, and another tenant's key never reaches the sandbox.
    """
    sandbox_id = headers.get("e2b-sandbox-id", "").strip()
    if not sandbox_id:
        raise UserError(
            "no E2b-Sandbox-Id header: point E2B_SANDBOX_URL at this server (the SDK then names the sandbox)"
        )
    secret = sandbox_secret(headers)
    if not secret:
        raise Unauthorized(
            "missing sandbox access token (X-Access-Token): create or connect the sandbox first"
        )
    return await _principal(auth, secret), sandbox_id


def sandbox_secret(headers: Mapping[str, str]) -> str:
    """The key a sandbox daemon request carries (its access token, else `X-API-KEY`); empty without one."""
    secret = next((headers[h].strip() for h in _SANDBOX_TOKENS if headers.get(h, "").strip()), "")
    return secret or headers.get("x-api-key", "").strip()


class KeyCheck:
    """Re-checks a stream's key every `every_s` seconds: a revoked key's streams end within that."""

    def __init__(self, auth: object, secret: str, every_s: float = 5.0) -> None:
        self.auth, self.secret, self.every_s = auth, secret, every_s
        self._checked = time.monotonic()

    async def valid(self) -> bool:
        if time.monotonic() - self._checked < self.every_s:
            return True
        try:
            await _principal(self.auth, self.secret)
        except Unauthorized:
            return False
        self._checked = time.monotonic()
        return True
