"""``/audit``: the audit log (filters; JSON or CSV export) and its hash-chain check."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import func, select

from ecglens.service import audit
from ecglens.service.db import ApiKey, AuditEvent
from ecglens.service.deps import AUDIT_READERS, Access, RuntimeDep, SessionDep
from ecglens.service.schemas import AuditEventPublic, ChainStatusPublic, ListOf, Problem

router = APIRouter(prefix="/audit", tags=["audit"])
_ERRORS = {401: {"model": Problem}, 403: {"model": Problem}}
_COLUMNS = list(AuditEventPublic.model_fields)


@router.get(
    "",
    response_model=ListOf[AuditEventPublic],
    responses={**_ERRORS, 200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}},
)
def read_audit(
    session: SessionDep,
    key: Annotated[ApiKey, Access("audit.read", "audit", AUDIT_READERS)],
    actor: Annotated[str | None, Query(max_length=200, description="Key id or key name.")] = None,
    action: Annotated[str | None, Query(max_length=60, examples=["record.read"])] = None,
    record: Annotated[str | None, Query(max_length=64, description="Record id.")] = None,
    since: Annotated[str | None, Query(max_length=32, examples=["2024-05-01T00:00:00Z"])] = None,
    until: Annotated[str | None, Query(max_length=32)] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",  # noqa: A002 - the public name
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
):
    """Events in order (oldest first). ``since`` / ``until`` are UTC ISO times (inclusive / exclusive)."""
    query = select(AuditEvent)
    if actor:
        query = query.where((AuditEvent.actor_key_id == actor) | (AuditEvent.actor_name == actor))
    if action:
        query = query.where(AuditEvent.action == action)
    if record:
        query = query.where(AuditEvent.record_id == record)
    if since:
        query = query.where(AuditEvent.at >= _iso(since))
    if until:
        query = query.where(AuditEvent.at < _iso(until))
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.seq).offset(skip).limit(limit)).all()
    events = [audit.event_dict(r) for r in rows]
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(events)
        return Response(
            out.getvalue(), media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="audit.csv"'}
        )
    return ListOf[AuditEventPublic](data=[AuditEventPublic(**e) for e in events], count=count)


def _iso(text: str) -> str:
    """A user's ISO time in the stored form's order (the stored form ends in Z; a bare date is midnight)."""
    text = text.strip().replace(" ", "T").rstrip("Z")
    return text if "T" in text else text + "T00:00:00"


@router.get("/verify", response_model=ChainStatusPublic, responses=_ERRORS)
def verify_audit(
    session: SessionDep, runtime: RuntimeDep, key: Annotated[ApiKey, Access("audit.verify", "audit", AUDIT_READERS)]
) -> ChainStatusPublic:
    """Check the whole keyed hash chain, and its end against the keyed checkpoints in the data directory: ok, or
    the first bad event and why."""
    return ChainStatusPublic(
        **audit.verify(session, runtime.audit_key, checkpoint_file=runtime.settings.audit_checkpoint_file).to_dict()
    )
