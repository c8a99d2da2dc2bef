"""``/analyses``: start an explain + robustness job, read its state and result, follow its progress (SSE)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import defer

from ecglens.distortions import parse_kinds
from ecglens.reports.summary import analysis_summary
from ecglens.service.db import DONE, FAILED, QUEUED, Analysis, ApiKey, Model, Record, new_id, utcnow
from ecglens.service.deps import (
    EVERYONE,
    SIGNAL_READERS,
    UPLOADERS,
    Access,
    RuntimeDep,
    SessionDep,
    audit_object,
    not_found,
    owns,
)
from ecglens.service.fitting import refusal
from ecglens.service.progress import JobView, ProgressHub
from ecglens.service.responses import json_response
from ecglens.service.schemas import AnalysisCreate, AnalysisCreated, AnalysisPublic, ListOf, Problem

router = APIRouter(prefix="/analyses", tags=["analyses"])
_ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem}}
# Seconds between database polls of the progress streams (one poll for all of them: `ProgressHub`).
EVENT_POLL_S = 0.25


def public(row: Analysis, with_result: bool) -> AnalysisPublic:
    """The API view of a job; the result only when ``with_result`` (auditors see metadata, not results)."""
    result = row.result_dict() if with_result and row.status == DONE else None
    extras = ("explanation", "robustness", "screening", "windows", "annotations")
    fields = {k: getattr(row, k) for k in AnalysisPublic.model_fields if k not in (*extras, "summary")}
    summary = analysis_summary(result) if result and result.get("explanation") else None
    return AnalysisPublic(**fields, **{k: (result or {}).get(k) for k in extras}, summary=summary)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AnalysisCreated,
    responses={**_ERRORS, 422: {"model": Problem}},
)
def create_analysis(
    body: AnalysisCreate,
    request: Request,
    session: SessionDep,
    key: Annotated[ApiKey, Access("analysis.create", "analysis", UPLOADERS)],
) -> AnalysisCreated:
    """Queue an analysis of a record with a registered model; poll ``GET /analyses/{id}`` or follow
    ``/analyses/{id}/events``."""
    audit_object(request, record_id=body.record_id[:32])
    record = session.get(Record, body.record_id)
    if record is None or record.deleted_at is not None or not owns(key, record.created_by):
        raise not_found("record", body.record_id)
    model = session.get(Model, body.model)
    if model is None:
        raise HTTPException(404, f"model {body.model[:80]!r} is not registered (see GET /api/v1/models)")
    if body.start_s is not None and body.start_s >= record.duration_s:
        raise HTTPException(422, f"start_s {body.start_s:g} s is past the end of the {record.duration_s:.1f} s record")
    try:
        distortions = None if body.distortions is None else list(parse_kinds(body.distortions))
    except ValueError as exc:  # an unknown kind: refused now, not as a failed job
        raise HTTPException(422, str(exc)) from None

    problem = refusal(session, record, model)
    if problem:
        raise HTTPException(422, problem)
    row = Analysis(
        id=new_id(),
        record_id=record.id,
        model=body.model,
        distortions=distortions,
        query_budget=body.query_budget,
        seed=body.seed,
        start_s=body.start_s,
        status=QUEUED,
        progress=0.0,
        queries=0,
        attempts=0,
        created_by=key.id,
        created_at=utcnow(),
    )
    session.add(row)
    session.commit()
    audit_object(request, object_id=row.id)
    request.app.state.executor.submit(row.id)
    return AnalysisCreated(id=row.id, status=QUEUED)


@router.get("", response_model=ListOf[AnalysisPublic], responses=_ERRORS)
def read_analyses(
    request: Request,
    session: SessionDep,
    key: Annotated[ApiKey, Access("analysis.list", "analysis", EVERYONE)],
    record_id: Annotated[str | None, Query(max_length=64)] = None,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ListOf[AnalysisPublic]:
    """Jobs, newest first, without results (read one job for its result); filter by ``record_id``."""
    query = select(Analysis).where(Analysis.record_id.in_(select(Record.id).where(Record.deleted_at.is_(None))))
    if record_id is not None:
        audit_object(request, record_id=record_id[:32])
        query = query.where(Analysis.record_id == record_id)
    if key.role == "service":
        query = query.where(Analysis.created_by == key.id)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Analysis.created_at.desc()).offset(skip).limit(limit)).all()
    return ListOf[AnalysisPublic](data=[public(r, with_result=False) for r in rows], count=count)


def _get_analysis(session: SessionDep, key: ApiKey, analysis_id: str, defer_result: bool = False) -> Analysis:
    """The analysis if the caller may see it and its record is not deleted (404 otherwise: a deleted record's
    diagnosis and saliency go with it). With ``defer_result`` its result is read only when used."""
    query = (
        select(Analysis, Record.deleted_at)
        .join(Record, Record.id == Analysis.record_id)
        .where(Analysis.id == analysis_id)
        .options(*([defer(Analysis.result)] if defer_result else []))
    )
    found = session.execute(query).first()  # the job and whether its record is deleted, in one query
    if found is None or not owns(key, found[0].created_by) or found[1] is not None:
        raise not_found("analysis", analysis_id)
    return found[0]


@router.get("/{analysis_id}", response_model=AnalysisPublic, responses=_ERRORS)
def read_analysis(
    analysis_id: str,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    key: Annotated[ApiKey, Access("analysis.read", "analysis", EVERYONE)],
) -> Response:
    """Status, progress 0-100, the error when failed, and when done the Explanation and RobustnessReport
    (auditors get the job's metadata without the result)."""
    row = _get_analysis(session, key, analysis_id, defer_result=True)
    audit_object(request, record_id=row.record_id)
    with_result = key.role in SIGNAL_READERS
    if row.status != DONE:
        return json_response(public(row, with_result))
    # A finished analysis's body never changes: serialised once (its result is tens of kB of JSON to parse,
    # summarise, validate and write again), then served from memory after the access checks above.
    cache_key = (row.id, row.finished_at, row.attempts, with_result)
    body = runtime.analysis_bodies.get(cache_key)
    if body is None:
        body = public(row, with_result).model_dump_json().encode()
        runtime.analysis_bodies.put(cache_key, body)
    return Response(body, media_type="application/json")


@router.get(
    "/{analysis_id}/events",
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
def read_analysis_events(
    analysis_id: str,
    request: Request,
    session: SessionDep,
    key: Annotated[ApiKey, Access("analysis.events", "analysis", SIGNAL_READERS)],
) -> StreamingResponse:
    """Server-sent events: ``progress`` ({status, progress, window, segments}) whenever one of them changes, then
    one ``done`` or ``failed`` event (with ``error``) and the stream ends. ``segments`` are the explainer's current
    best in ``window`` ({index, count, finding, start_s}: which of the windows the job explains), in the shape of
    the result's segments; ``[]`` and null before the first. It also ends, with a ``revoked`` event, when the
    calling key is revoked, and when the record is deleted or the server shuts down."""
    row = _get_analysis(session, key, analysis_id)
    audit_object(request, record_id=row.record_id)
    return StreamingResponse(
        _events(request.app.state.progress, analysis_id, key.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(hub: ProgressHub, analysis_id: str, key_id: str) -> AsyncIterator[str]:
    watch = hub.subscribe(analysis_id, key_id)
    last: JobView | None = None
    idle = 0.0
    try:
        while True:
            await hub.next_tick()
            if hub.stopping:
                return
            if key_id in hub.revoked:
                yield f"event: revoked\ndata: {json.dumps({'id': analysis_id, 'error': 'API key revoked'})}\n\n"
                return
            if analysis_id not in hub.states:
                continue  # not read yet
            state = hub.states[analysis_id]
            if state is None:
                return
            if state != last:
                last, idle = state, 0.0
                payload: dict[str, Any] = {"id": analysis_id, "status": state.status, "progress": state.progress}
                if state.status in (DONE, FAILED):
                    payload["error"] = state.error
                    yield f"event: {state.status}\ndata: {json.dumps(payload)}\n\n"
                    return
                partial = state.partial or {}
                payload.update(window=partial.get("window"), segments=partial.get("segments") or [])
                yield f"event: progress\ndata: {json.dumps(payload)}\n\n"
            else:
                idle += hub.poll_s
                if idle >= 15.0:  # a comment line keeps proxies from closing a quiet stream
                    idle = 0.0
                    yield ": keep-alive\n\n"
    finally:
        hub.unsubscribe(watch)
