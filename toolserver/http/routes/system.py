"""Health, metrics, API keys, secrets and the call audit."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Depends, Response

from toolserver.api import AuditList, Health, KeyList, NewApiKey, SecretList
from toolserver.api.requests import KeyCreate, SecretPut
from toolserver.http.health import HealthSummary, health_summary
from toolserver.http.routes.deps import caller, services
from toolserver.http.routes.router import ApiRouter, content_of
from toolserver.service.principal import Principal

router = ApiRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
async def healthz(svc: Any = Depends(services), summary: HealthSummary = Depends(health_summary)) -> Any:
    """Liveness and a summary (at most 1 s old): Ray nodes, sandboxes running, warm pool."""
    return await summary.get(svc)


@router.get(
    "/livez", response_class=Response, responses=content_of("text/plain", "`ok`: this replica serves")
)
async def livez() -> Response:
    """A load balancer's health check: answers `ok` from the ingress replica, asking no actor or node."""
    return Response("ok\n", media_type="text/plain")


@router.get(
    "/metrics",
    response_class=Response,
    responses=content_of("text/plain", "Prometheus metrics"),
)
async def metrics(svc: Any = Depends(services)) -> Response:
    """Prometheus metrics (with each node's egress counts, asked at the scrape)."""
    await svc.metrics.refresh_nodes(svc.nodes)
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")


@router.post("/v1/keys", status_code=201, response_model=NewApiKey)
async def create_key(body: KeyCreate, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """Create an API key for a namespace (admin); the secret is in this answer only."""
    svc.auth.require_admin(who)
    record, secret = await asyncio.to_thread(
        lambda: svc.keys.create(body.namespace, body.name, admin=body.admin)
    )
    return {
        "id": record.id,
        "namespace": record.namespace,
        "name": record.name,
        "admin": record.is_admin,
        "key": secret,
    }


@router.get("/v1/keys", response_model=KeyList)
async def list_keys(who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """Every API key, never their secrets (admin)."""
    svc.auth.require_admin(who)
    records = await asyncio.to_thread(svc.keys.list, None)
    return {
        "keys": [
            {
                "id": r.id,
                "namespace": r.namespace,
                "name": r.name,
                "prefix": r.prefix,
                "admin": r.is_admin,
                "revoked": r.revoked_at is not None,
            }
            for r in records
        ]
    }


@router.delete("/v1/keys/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: str, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Response:
    """Revoke a key (admin); its open streams end."""
    svc.auth.require_admin(who)
    await asyncio.to_thread(svc.keys.revoke, key_id)
    svc.auth._cache.clear()
    return Response(status_code=204)


@router.put("/v1/secrets/{name}", status_code=204, response_class=Response)
async def put_secret(
    name: str, body: SecretPut, who: Principal = Depends(caller), svc: Any = Depends(services)
) -> Response:
    """Store or replace a secret of the caller's namespace."""
    await asyncio.to_thread(svc.secrets.put, who.namespace, name, body.value)
    return Response(status_code=204)


@router.get("/v1/secrets", response_model=SecretList)
async def list_secrets(who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """The names of the caller's secrets."""
    return {"secrets": sorted(await asyncio.to_thread(svc.secrets.list, who.namespace))}


@router.get("/v1/audit", response_model=AuditList)
async def audit(limit: int = 100, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """The caller's most recent tool calls."""
    records = await asyncio.to_thread(lambda: svc.audit.list(who.namespace, limit=min(max(limit, 1), 1000)))
    return {"calls": [r.model_dump() if hasattr(r, "model_dump") else r.__dict__ for r in records]}
