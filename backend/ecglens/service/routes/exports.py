"""``/analyses/{id}/fhir`` and ``/analyses/{id}/report.pdf``: a finished analysis as a FHIR R4 Observation and
as a one-page PDF report. Results, so the roles that may read an analysis's result (not auditors); audited like
reading the analysis, under their own actions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from ecglens.ecg import Ecg
from ecglens.reports.basics import cached_basics
from ecglens.reports.fhir import analysis_observation
from ecglens.reports.patient import patient_fields, patient_id
from ecglens.reports.pdf import render_report
from ecglens.service.db import DONE, Analysis, ApiKey, Model, Record
from ecglens.service.deps import SIGNAL_READERS, Access, RuntimeDep, SessionDep, audit_object, not_found, owns
from ecglens.service.routes.records import PATIENT_READERS
from ecglens.service.schemas import Problem
from ecglens.service.signals import cached_signal

router = APIRouter(prefix="/analyses", tags=["analyses"])
_ERRORS = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem, "description": "the analysis is not done (queued, running or failed)"},
}
FHIR_JSON = "application/fhir+json"


def _finished(session: SessionDep, key: ApiKey, request: Request, analysis_id: str) -> tuple[Analysis, dict[str, Any]]:
    """The analysis and its result, 404 when it is not the caller's to see, 409 when it has no result yet."""
    row = session.get(Analysis, analysis_id)
    if row is None or not owns(key, row.created_by):
        raise not_found("analysis", analysis_id)
    audit_object(request, record_id=row.record_id)
    record = session.get(Record, row.record_id)
    if record is None or record.deleted_at is not None:  # a deleted record's results go with it
        raise not_found("analysis", analysis_id)
    result = row.result_dict() if row.status == DONE else None
    if result is None:
        why = f": {row.error[:200]}" if row.error else ""
        raise HTTPException(409, f"analysis {analysis_id} is {row.status}{why}; exports exist once it is done")
    return row, result


def _model_version(session: SessionDep, name: str) -> str | None:
    model = session.get(Model, name)
    version = (model.card or {}).get("version") if model is not None else None
    return str(version) if version not in (None, "") else None


def _record(session: SessionDep, record_id: str) -> Record:
    record = session.get(Record, record_id)
    if record is None or record.deleted_at is not None:
        raise HTTPException(404, f"record {record_id} of this analysis was deleted")
    return record


@router.get(
    "/{analysis_id}/fhir",
    responses={**_ERRORS, 200: {"content": {FHIR_JSON: {}}, "description": "a FHIR R4 Observation"}},
)
def read_analysis_fhir(
    analysis_id: str,
    request: Request,
    session: SessionDep,
    key: Annotated[ApiKey, Access("analysis.fhir", "analysis", SIGNAL_READERS)],
) -> JSONResponse:
    """The finished analysis as a FHIR R4 ``Observation``: the diagnosis (``valueCodeableConcept``, findings in
    ``interpretation``), class probabilities, robustness score, flip SNR per distortion and the critical
    segments as components, the classifier's name and model-card version (``device``), and the SHA-256 of the
    record's files as identifiers."""
    row, result = _finished(session, key, request, analysis_id)
    record = _record(session, row.record_id)
    observation = analysis_observation(
        result,
        analysis_id=row.id,
        model_name=row.model,
        model_version=_model_version(session, row.model),
        record_files=record.files,
        issued=row.finished_at,
        patient_id=patient_id(record.header),
        record_leads=record.leads,
    )
    return JSONResponse(observation, media_type=FHIR_JSON)


@router.get(
    "/{analysis_id}/report.pdf",
    responses={**_ERRORS, 200: {"content": {"application/pdf": {}}, "description": "one-page PDF report"}},
)
def read_analysis_report(
    analysis_id: str,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    key: Annotated[ApiKey, Access("analysis.report", "analysis", SIGNAL_READERS)],
) -> Response:
    """A one-page PDF: the ECG on paper grid with the critical segments shaded, the diagnosis with its
    probabilities, the robustness curves and score with what it means, the model card's name and version, the
    dates and the record's SHA-256."""
    row, result = _finished(session, key, request, analysis_id)
    record = _record(session, row.record_id)
    signal = cached_signal(record, runtime.blobs, runtime.settings.cache_dir)
    ecg = Ecg(signal=signal, fs=record.fs, leads=tuple(record.leads), metadata=record.header or {}, name=record.name)
    basics = cached_basics(runtime.settings.cache_dir, record.id, signal, record.fs, record.leads)
    pdf = render_report(
        ecg,
        result,
        model_name=row.model,
        model_version=_model_version(session, row.model),
        record_sha256=record.files[0]["sha256"],
        record_name=record.name,
        analysis_id=row.id,
        analysed_at=row.finished_at,
        basics=basics,
        patient=patient_fields(record.header) if key.role in PATIENT_READERS else None,
    )
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="ecglens-{row.id}.pdf"'}
    )
