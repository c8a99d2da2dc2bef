"""``/records``: upload (multipart files or zips), list, read, signal window for display, soft delete."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sqlalchemy import Select, bindparam, func, or_, select
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartParser

from ecglens.formats.fhir import is_fhir
from ecglens.reports.basics import cached_basics
from ecglens.reports.patient import patient_fields
from ecglens.service.auth import ADMIN, CLINICIAN
from ecglens.service.db import Analysis, ApiKey, Blob, Record, new_id, utcnow
from ecglens.service.deps import (
    ADMINS,
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
from ecglens.service.fitting import model_fits
from ecglens.service.grouping import (
    file_roles,
    group_files,
    is_signal_file,
    read_group_annotations,
    stored_annotations,
)
from ecglens.service.multipart import FormFile, read_form
from ecglens.service.responses import json_response
from ecglens.service.runtime import Runtime
from ecglens.service.schemas import (
    Intervals,
    LatestAnalysis,
    ListOf,
    ModelFit,
    Patient,
    Problem,
    RecordAnnotations,
    RecordPublic,
    SignalWindow,
)
from ecglens.service.signals import cached_signal, minmax_decimate, write_cache
from ecglens.service.uploads import (
    UploadError,
    UploadFile,
    expand_zips,
    jsonable_header,
    read_group,
    record_format,
    safe_name,
)

router = APIRouter(prefix="/records", tags=["records"])
# Who reads a record's patient fields: the people caring for the patient (an auditor audits, a service key is a
# machine).
PATIENT_READERS = (CLINICIAN, ADMIN)
# WFDB signal files and EDF / BDF files the multipart parser spooled to disk (Starlette spools a file past 1 MiB)
# are read through a map of that file, not as a bytes copy (`ecglens.formats.mapped`): with the copy a 38 MB 12-lead
# WFDB upload grew the server by 3.05x its size and a 5.7 MB one peaked at 3.19x (traced), mapped 2.09x / 2.19x.
MAPPED_UPLOAD_BYTES = MultiPartParser.spool_max_size
_MAPPED_SUFFIXES = (".edf", ".bdf")
_ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem}}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more record files or .zip archives. A "
                            "WFDB header takes the signal files it names "
                            "(.dat, .mat) and the annotation files of its "
                            "record name (.atr, .qrs, ...): see docs/formats.md.",
                        }
                    },
                    "required": ["files"],
                }
            },
            "application/fhir+json": {
                "schema": {
                    "type": "object",
                    "description": "One FHIR R4 Observation with component.valueSampledData, one component per lead.",
                }
            },
        },
    }
}
FHIR_TYPES = ("application/fhir+json", "application/json+fhir")  # the second is the DSTU2/STU3 spelling


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ListOf[RecordPublic],
    openapi_extra=_UPLOAD_BODY,
    responses={**_ERRORS, 413: {"model": Problem}, 422: {"model": Problem, "description": "the reader's message"}},
)
async def create_records(
    request: Request, runtime: RuntimeDep, key: Annotated[ApiKey, Access("record.create", "record", UPLOADERS)]
) -> ListOf[RecordPublic]:
    """Upload one or more records: multipart field ``files`` (any field name is accepted), each a record file
    or a zip of them; or one FHIR R4 Observation as the body with ``Content-Type: application/fhir+json``.
    Answers the records created, in upload order; nothing is stored when any file is bad."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in FHIR_TYPES:
        files = [UploadFile("observation.json", await request.body())]
        if not is_fhir(files[0].data):
            raise HTTPException(
                422, f'{content_type} body is not a FHIR resource (a JSON object with resourceType "Observation")'
            )
        return await _create(request, runtime, key, files)
    form = await read_form(request, max_files=1000, max_fields=100, map_if=_mapped_upload)
    files = [UploadFile(safe_name(v.filename), v.data) for _field, v in form if isinstance(v, FormFile)]
    del form  # `files` is the one holder of the bytes now: `_store_upload` lets a zip's go once it is expanded
    return await _create(request, runtime, key, files)


def _mapped_upload(filename: str | None, size: int) -> bool:
    name = safe_name(filename)
    return size >= MAPPED_UPLOAD_BYTES and (is_signal_file(name) or name.lower().endswith(_MAPPED_SUFFIXES))


async def _create(request: Request, runtime: Runtime, key: ApiKey, files: list[UploadFile]) -> ListOf[RecordPublic]:
    try:
        records = await run_in_threadpool(_store_upload, runtime, files, key)
    except UploadError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    audit_object(
        request, object_id=",".join(r.id for r in records)[:200], record_id=records[0].id if len(records) == 1 else None
    )
    return ListOf[RecordPublic](data=[RecordPublic.model_validate(r) for r in records], count=len(records))


def _store_upload(runtime: Runtime, files: list[UploadFile], key: ApiKey) -> list[Record]:
    """Read every record first (all or nothing), then keep the bytes as blobs and add the rows. ``files`` is
    emptied once its zips are expanded."""
    if not files:
        raise UploadError("no files in the upload (send multipart field 'files')")
    expanded = expand_zips(files, runtime.settings.max_upload_bytes, spool_if=_mapped_upload)
    files.clear()  # the zips' own bytes go before their members are read (the members are in `expanded`)
    groups = group_files(expanded)
    read = []
    for group in groups:
        ecg = read_group(group)
        roles = file_roles(group, ecg)
        annotations = {a.filename: a for a in read_group_annotations(group, ecg, roles)}
        read.append((group, ecg, roles, annotations))
    rows: list[Record] = []
    with runtime.sessions() as session:
        for group, ecg, roles, annotations in read:
            entries = []
            for f in group.files:
                sha = runtime.blobs.put(f.data)
                if session.get(Blob, sha) is None:
                    session.add(Blob(sha256=sha, size=len(f.data)))
                    session.flush()
                entry = {
                    "filename": f.filename,
                    "sha256": sha,
                    "size": len(f.data),
                    "container": f.container,
                    "role": roles[f.filename],
                }
                if f.filename in annotations:
                    ann = annotations[f.filename]
                    entry.update(
                        annotator=ann.annotator,
                        beats=len(ann.beats),
                        rhythm_episodes=len(ann.rhythms),
                        beat_counts=ann.beat_counts(),
                        warnings=ann.warnings,
                    )
                entries.append(entry)
            row = Record(
                id=new_id(),
                name=(ecg.name or group.main.filename.rsplit(".", 1)[0])[:255],
                filename=group.main.filename,
                format=record_format(ecg, group.main.filename),
                fs=ecg.fs,
                leads=list(ecg.leads),
                n_samples=ecg.n_samples,
                duration_s=round(ecg.duration_s, 6),
                files=entries,
                header=jsonable_header(ecg.metadata),
                created_by=key.id,
                created_at=utcnow(),
            )
            write_cache(runtime.settings.cache_dir, row.id, ecg.signal)
            session.add(row)
            rows.append(row)
        session.commit()
    return rows


@router.get("", response_model=ListOf[RecordPublic], responses=_ERRORS)
def read_records(
    session: SessionDep,
    key: Annotated[ApiKey, Access("record.list", "record", EVERYONE)],
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    q: Annotated[
        str | None, Query(max_length=200, description="Case-insensitive text in the name or file name.")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Uploaded at or after (ISO time; UTC when no zone is given).")
    ] = None,
    until: Annotated[datetime | None, Query(description="Uploaded before (ISO time).")] = None,
) -> Response:
    """Records not deleted, newest first (a service key sees its own only), each with its latest analysis."""
    query = select(Record).where(Record.deleted_at.is_(None))
    if key.role == "service":
        query = query.where(Record.created_by == key.id)
    if q and q.strip():
        pattern = f"%{q.strip().lower()}%"
        query = query.where(or_(func.lower(Record.name).like(pattern), func.lower(Record.filename).like(pattern)))
    # Times are stored as fixed-width UTC text, so they compare as strings.
    if since is not None:
        query = query.where(Record.created_at >= _stored_time(since))
    if until is not None:
        query = query.where(Record.created_at < _stored_time(until))
    rows = session.scalars(query.order_by(Record.created_at.desc()).offset(skip).limit(limit)).all()
    if len(rows) < limit and (rows or not skip):  # the page holds the last match: no count query needed
        count = skip + len(rows)
    else:
        count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    latest = _latest_analyses(session, key, [r.id for r in rows])
    data = [RecordPublic.model_validate(r).model_copy(update={"latest_analysis": latest.get(r.id)}) for r in rows]
    return json_response(ListOf[RecordPublic](data=data, count=count))


def _stored_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _newest_analyses(own_only: bool) -> Select:
    """Columns of the newest analysis of each record in the expanding parameter ``ids`` (of key ``key_id`` only
    when ``own_only``): built once; one pass over the records' analyses, Core columns only (never a result)."""
    a = Analysis.__table__.c
    scope = [a.record_id.in_(bindparam("ids", expanding=True))]
    if own_only:
        scope.append(a.created_by == bindparam("key_id"))
    rank = func.row_number().over(partition_by=a.record_id, order_by=(a.created_at.desc(), a.id.desc()))
    ranked = select(a.id, a.record_id, a.status, a.progress, a.created_at, rank.label("rank")).where(*scope)
    ranked = ranked.subquery()
    return select(ranked.c.id, ranked.c.record_id, ranked.c.status, ranked.c.progress, ranked.c.created_at).where(
        ranked.c.rank == 1
    )


_NEWEST = {False: _newest_analyses(False), True: _newest_analyses(True)}


def _latest_analyses(session: SessionDep, key: ApiKey, record_ids: list[str]) -> dict[str, LatestAnalysis]:
    """The newest analysis per record among ``record_ids`` (a service key's own analyses only): four columns of
    one analysis per record, however many a record has."""
    if not record_ids:
        return {}
    own_only = key.role == "service"
    params = {"ids": record_ids, **({"key_id": key.id} if own_only else {})}
    latest: dict[str, LatestAnalysis] = {}
    for row in session.execute(_NEWEST[own_only], params):
        latest[row.record_id] = LatestAnalysis(
            id=row.id, status=row.status, progress=row.progress, created_at=row.created_at
        )
    return latest


def _get_record(session: SessionDep, key: ApiKey, record_id: str) -> Record:
    row = session.get(Record, record_id)
    if row is None or row.deleted_at is not None or not owns(key, row.created_by):
        raise not_found("record", record_id)
    return row


@router.get("/{record_id}", response_model=RecordPublic, responses=_ERRORS)
def read_record(
    record_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    key: Annotated[ApiKey, Access("record.read", "record", EVERYONE)],
) -> Response:
    """One record's metadata (no samples); for the roles that may read its samples, the clinical basics measured
    on the ECG (heart rate and RR / PR / QRS / QT / QTc in ms, neurokit2 delineation of the first 30 s); for
    clinicians and admins, the header's patient fields (age, sex, diagnoses, patient id)."""
    row = _get_record(session, key, record_id)
    extra: dict = {}
    if key.role in SIGNAL_READERS:  # measured on the samples, so for those who may read them
        signal = cached_signal(row, runtime.blobs, runtime.settings.cache_dir)
        basics = cached_basics(runtime.settings.cache_dir, row.id, signal, row.fs, row.leads)
        extra = {
            "heart_rate_bpm": basics.get("heart_rate_bpm"),
            "intervals_ms": Intervals(**(basics.get("intervals_ms") or {})),
            "basics": {k: v for k, v in basics.items() if k not in ("heart_rate_bpm", "intervals_ms")},
        }
    if key.role in PATIENT_READERS:
        extra["patient"] = Patient(**patient_fields(row.header))
    return json_response(RecordPublic.model_validate(row).model_copy(update=extra))


@router.get("/{record_id}/signal", response_model=SignalWindow, responses=_ERRORS)
def read_signal(
    record_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    key: Annotated[ApiKey, Access("record.signal", "record", SIGNAL_READERS)],
    leads: Annotated[str | None, Query(description="Comma-separated lead names; default all.", max_length=500)] = None,
    start_s: Annotated[float, Query(ge=0)] = 0.0,
    end_s: Annotated[float | None, Query(gt=0, description="Default: the record's end.")] = None,
    max_points: Annotated[int, Query(ge=2, le=200_000)] = 5000,
) -> Response:
    """Samples (mV) of ``leads`` between ``start_s`` and ``end_s``; more than ``max_points`` per lead are
    min/max-decimated (each bucket keeps its extremes, so peaks survive)."""
    row = _get_record(session, key, record_id)
    signal = cached_signal(row, runtime.blobs, runtime.settings.cache_dir)
    names = [x.strip() for x in leads.split(",") if x.strip()] if leads else list(row.leads)
    unknown = [x for x in names if x not in row.leads]
    if unknown:
        raise HTTPException(422, f"record has no lead {unknown[0][:40]!r} (leads: {', '.join(row.leads)})")
    end = row.duration_s if end_s is None else min(end_s, row.duration_s)
    a, b = int(round(start_s * row.fs)), int(round(end * row.fs))
    a, b = min(a, row.n_samples), min(b, row.n_samples)
    if b <= a:
        raise HTTPException(422, f"empty window [{start_s}, {end}) s of a {row.duration_s:.2f} s record")
    rows = [row.leads.index(x) for x in names]
    window = np.asarray(signal[rows, a:b], dtype=np.float32)
    idx, values = minmax_decimate(window, max_points)
    decimated = window.shape[1] > max_points
    times = {x: np.round((a + idx[i]) / row.fs, 6).tolist() for i, x in enumerate(names)} if decimated else None
    body = SignalWindow(
        record_id=row.id,
        fs=row.fs,
        leads=names,
        start_s=a / row.fs,
        end_s=b / row.fs,
        t0=a / row.fs,
        dt=1.0 / row.fs,
        decimated=decimated,
        times=times,
        values={x: np.round(values[i].astype(float), 5).tolist() for i, x in enumerate(names)},
    )
    return json_response(body)


@router.get("/{record_id}/annotations", response_model=RecordAnnotations, responses=_ERRORS)
def read_annotations(
    record_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    key: Annotated[ApiKey, Access("record.annotations", "record", SIGNAL_READERS)],
) -> RecordAnnotations:
    """The reference annotations uploaded with the record (``.atr``, ``.qrs``, ...): every beat with its label and
    AAMI class, rhythm episodes and other events, times in seconds from the record's start."""
    row = _get_record(session, key, record_id)
    files = stored_annotations(row, runtime.blobs)
    return RecordAnnotations(record_id=row.id, files=[a.to_dict() for a in files])


@router.get("/{record_id}/models", response_model=ListOf[ModelFit], responses=_ERRORS)
def read_record_models(
    record_id: str, session: SessionDep, key: Annotated[ApiKey, Access("record.models", "record", EVERYONE)]
) -> ListOf[ModelFit]:
    """Every registered model and whether it can analyse this record; when not, why, and what would."""
    row = _get_record(session, key, record_id)
    fits = model_fits(session, row)
    return ListOf[ModelFit](data=fits, count=len(fits))


@router.delete("/{record_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
def delete_record(
    record_id: str, session: SessionDep, key: Annotated[ApiKey, Access("record.delete", "record", ADMINS)]
) -> None:
    """Soft delete: the record disappears from the API; its row and blobs stay (and the audit log says who)."""
    row = _get_record(session, key, record_id)
    row.deleted_at, row.deleted_by = utcnow(), key.id
    session.commit()
