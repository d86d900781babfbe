"""The head of the audit hash chain, to be recorded outside the service."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.auth import Reader
from infra.audit_chain import read_head

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditHead(BaseModel):
    position: int = Field(description="store position of the last chained event (0: none)")
    sha256: str = Field(description="the chain's link at that position, 64 hex digits")


@router.get("/head", response_model=AuditHead)
async def audit_head(_: Reader, request: Request) -> AuditHead:
    """The hash chain's head; `product-status audit verify --head POSITION:SHA256` checks
    later that the store still leads to it."""
    head = await to_thread.run_sync(read_head, request.app.state.services.database)
    return AuditHead(position=head.position, sha256=head.sha256)
