"""``/models``: the classifier registry (list; admins register TorchScript / ONNX files or HTTP endpoints, and
harden a model into a new one as a job, ``/models/{name}/harden`` + ``/hardening-jobs/{job_id}``)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ecglens.classifiers import load_classifier
from ecglens.classifiers.base import input_samples
from ecglens.classifiers.card import ModelCard
from ecglens.datasets.mitdb import CLASS_NAMES
from ecglens.errors import ClassifierError
from ecglens.hardening import hardened_name, load_trainable
from ecglens.service.db import QUEUED, RUNNING, ApiKey, HardeningJob, Model, new_id, utcnow
from ecglens.service.deps import ADMINS, EVERYONE, Access, RuntimeDep, SessionDep, audit_object, not_found
from ecglens.service.jobs import mitdb_folder
from ecglens.service.multipart import FormFile, read_form
from ecglens.service.runtime import Runtime
from ecglens.service.schemas import (
    MODEL_NAME_PATTERN,
    HardenCreate,
    HardeningJobPublic,
    HardeningParams,
    ListOf,
    ModelPublic,
    Problem,
)

# No prefix: the hardening jobs live at /hardening-jobs beside /models.
router = APIRouter(tags=["models"])
_ERRORS = {401: {"model": Problem}, 403: {"model": Problem}}
_NAME = re.compile(MODEL_NAME_PATTERN)
_KINDS = {
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
    ".onnx": "onnx",
}
_REGISTER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "Registry name; default: the card's name."},
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "TorchScript (.pt) or ONNX (.onnx) model.",
                        },
                        "card": {"type": "string", "description": "Model card JSON (a file or a text field)."},
                        "endpoint": {
                            "type": "string",
                            "description": "http(s) URL of a classifier on an allowed host.",
                        },
                    },
                }
            }
        },
    }
}


def public(row: Model) -> ModelPublic:
    return ModelPublic(
        name=row.name,
        kind=row.kind,
        card=row.card or {},
        sha256=row.sha256,
        created_by=row.created_by,
        created_at=row.created_at,
        endpoint=row.spec if row.kind == "http" else None,
    )


@router.get("/models", response_model=ListOf[ModelPublic], responses=_ERRORS)
def read_models(
    session: SessionDep, key: Annotated[ApiKey, Access("model.list", "model", EVERYONE)]
) -> ListOf[ModelPublic]:
    """Registered classifiers with their model cards."""
    rows = session.scalars(select(Model).order_by(Model.created_at)).all()
    return ListOf[ModelPublic](data=[public(r) for r in rows], count=len(rows))


@router.post(
    "/models",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelPublic,
    openapi_extra=_REGISTER_BODY,
    responses={**_ERRORS, 409: {"model": Problem}, 413: {"model": Problem}, 422: {"model": Problem}},
)
async def create_model(
    request: Request, runtime: RuntimeDep, key: Annotated[ApiKey, Access("model.create", "model", ADMINS)]
) -> ModelPublic:
    """Register a classifier: a TorchScript or ONNX ``file`` with its ``card`` JSON, or an HTTP ``endpoint``
    on a host in ``ECGLENS_ALLOWED_MODEL_HOSTS`` (card optional: else fetched from ``{endpoint}/card``). The
    model is loaded and asked about one blank input before it is accepted."""
    form = await read_form(request, max_files=4, max_fields=20)
    fields: dict[str, Any] = {
        name: (value.filename or "", value.data) if isinstance(value, FormFile) else value for name, value in form
    }
    row = await run_in_threadpool(_register, runtime, fields, key)
    audit_object(request, object_id=row.name)
    return public(row)


def _register(runtime: Runtime, fields: dict[str, Any], key: ApiKey) -> Model:
    card = _card(fields.get("card"))
    endpoint = fields.get("endpoint")
    upload = fields.get("file")
    if bool(endpoint) == bool(upload):
        raise HTTPException(422, "send either 'file' (with 'card') or 'endpoint', not both or neither")

    model_card = None
    if card is not None:
        try:
            model_card = ModelCard.from_dict(card)
        except (ClassifierError, TypeError, ValueError) as exc:
            raise HTTPException(422, f"model card: {exc}") from None
    if model_card is not None and model_card.modality != "ecg":
        raise HTTPException(
            422,
            f"model card: modality {model_card.modality!r}: the service analyses ECG records only; explain image "
            "and video classifiers with the library or the CLI (ecglens explain IMAGE.png --model MODEL.pt)",
        )
    name = str(fields.get("name") or (model_card.name if model_card else "")).strip()
    if not _NAME.match(name):
        raise HTTPException(
            422, "model name must be 1-100 letters, digits, '_', '.' or '-' (give 'name' or a card with one)"
        )
    with runtime.sessions() as session:
        if session.get(Model, name) is not None:
            raise HTTPException(409, f"model {name!r} is already registered")
    if endpoint:
        kind, spec, sha = "http", _allowed_endpoint(runtime, str(endpoint)), None
    else:
        if not isinstance(upload, tuple):
            raise HTTPException(422, "'file' must be a file part")
        filename, data = upload
        suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if suffix not in _KINDS:
            raise HTTPException(422, f"{filename or 'file'}: expected a TorchScript (.pt) or ONNX (.onnx) model")
        if model_card is None:
            raise HTTPException(422, f"{filename}: a model file needs its 'card' JSON")
        kind = _KINDS[suffix]
        sha = runtime.blobs.put(data)
        folder = runtime.settings.model_dir
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{name}-{sha[:12]}{'.pt' if kind == 'torchscript' else '.onnx'}"
        path.write_bytes(data)
        model_card.save(path.with_suffix(".json"))
        for written in (path, path.with_suffix(".json")):
            written.chmod(0o600)
        spec = str(path)
    card_dict = _check_loads(kind, spec, model_card)
    row = Model(name=name, kind=kind, spec=spec, card=card_dict, sha256=sha, created_by=key.id, created_at=utcnow())
    with runtime.sessions() as session:
        session.add(row)
        session.commit()
    return row


def _card(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    text = value[1] if isinstance(value, tuple) else value
    try:
        card = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(422, f"model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise HTTPException(422, "model card must be a JSON object")
    return card


def _allowed_endpoint(runtime: Runtime, url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HTTPException(422, f"endpoint {url[:200]!r} is not an http(s) URL")
    allowed = {h.lower() for h in runtime.settings.allowed_model_hosts}
    host = parts.hostname.lower()
    if host not in allowed and f"{host}:{parts.port}" not in allowed:
        raise HTTPException(422, f"endpoint host {host!r} is not in the allow-list (ECGLENS_ALLOWED_MODEL_HOSTS)")
    return url.strip()


def _check_loads(kind: str, spec: str, card: Any) -> dict[str, Any]:
    """Load the classifier on CPU and ask it about one blank input; its card as registered."""
    try:
        clf = load_classifier(spec, card=card if kind == "http" else None, device="cpu")
        probe = np.zeros((1, len(clf.lead_names), input_samples(clf)), dtype=np.float32)
        out = np.asarray(clf.predict_proba(probe))
        if out.shape != (1, len(clf.class_names)):
            raise ClassifierError(f"answered shape {out.shape} for 1 input, expected (1, {len(clf.class_names)})")
    except ClassifierError as exc:
        raise HTTPException(422, f"model rejected: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a broken model file is the upload's fault
        raise HTTPException(422, f"model rejected: {type(exc).__name__}: {str(exc)[:300]}") from None
    card_obj = getattr(clf, "card", None)
    return card_obj.to_dict() if hasattr(card_obj, "to_dict") else (card.to_dict() if card else {})


# ------------------------------------------------------------------------------------------------ hardening
def public_job(row: HardeningJob) -> HardeningJobPublic:
    params = row.params or {}
    return HardeningJobPublic(
        id=row.id,
        parent_model=row.parent_model,
        new_model=row.new_model,
        status=row.status,
        progress=row.progress,
        error=row.error,
        params=HardeningParams(
            seed=int(params.get("seed", 0)),
            epochs=params.get("epochs"),
            agent_windows=params.get("agent_windows"),
            soup=params.get("soup"),
        ),
        result=row.result,
        attempts=row.attempts,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_s=row.duration_s,
    )


@router.post(
    "/models/{name}/harden",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=HardeningJobPublic,
    responses={
        **_ERRORS,
        404: {"model": Problem},
        409: {"model": Problem},
        422: {"model": Problem},
        503: {"model": Problem},
    },
)
def create_hardening_job(
    name: str,
    body: HardenCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    runtime: RuntimeDep,
    key: Annotated[ApiKey, Access("model.harden", "model", ADMINS)],
) -> HardeningJobPublic:
    """Queue the hardening of model ``name`` (`ecglens.hardening`: fine-tuning on its MIT-BIH DS1 training data
    mixed with realistic noise and the agent's minimal flips, original labels kept). The new model is
    registered as ``new_name`` when the job is done; follow ``GET /hardening-jobs/{id}`` (the ``Location``).

    Refused at once: 404 unknown model; 422 a model whose weights cannot be fine-tuned (ONNX, HTTP, frozen
    TorchScript) or whose classes are not the MIT-BIH ones; 409 ``new_name`` registered or claimed by a
    pending job; 503 the MIT-BIH folder (``ECGLENS_MITDB_DIR``) missing or incomplete."""
    parent = session.get(Model, name)
    if parent is None:
        raise HTTPException(404, f"model {name[:100]!r} is not registered (see GET /api/v1/models)")
    _check_hardenable(parent)
    new_name = body.new_name or hardened_name(name, body.seed)
    if not _NAME.match(new_name):
        raise HTTPException(
            422,
            f"the default name {new_name[:120]!r} is not a valid model name; give 'new_name' "
            "(1-100 letters, digits, '_', '.' or '-')",
        )
    if session.get(Model, new_name) is not None:
        raise HTTPException(409, f"model {new_name!r} is already registered; give another 'new_name'")
    pending = session.scalar(
        select(HardeningJob.id).where(HardeningJob.new_model == new_name, HardeningJob.status.in_((QUEUED, RUNNING)))
    )
    if pending is not None:
        raise HTTPException(
            409, f"model {new_name!r} is being made by hardening job {pending}; give another 'new_name'"
        )

    try:
        mitdb_folder(runtime.settings)
    except FileNotFoundError as exc:
        raise HTTPException(503, f"hardening needs the MIT-BIH records on the server: {exc}") from None
    row = HardeningJob(
        id=new_id(),
        parent_model=name,
        new_model=new_name,
        status=QUEUED,
        progress=0.0,
        params={"seed": body.seed, "epochs": body.epochs, "agent_windows": body.agent_windows, "soup": body.soup},
        attempts=0,
        created_by=key.id,
        created_at=utcnow(),
    )
    session.add(row)
    session.commit()
    request.app.state.executor.submit_hardening(row.id)
    response.headers["Location"] = request.url_for("read_hardening_job", job_id=row.id).path
    return public_job(row)


def _check_hardenable(parent: Model) -> None:
    """422 unless ``parent``'s weights can be fine-tuned on MIT-BIH: checked here so the admin learns at once,
    not minutes later from a failed job (`ecglens.service.hardening_job` and `mitdb_sources` check again)."""
    if parent.kind not in ("builtin", "torchscript"):  # never load an HTTP endpoint or ONNX file for this
        raise HTTPException(
            422,
            f"model {parent.name!r} is {parent.kind}: hardening fine-tunes weights, so it "
            "needs the built-in model or a TorchScript upload",
        )
    try:
        trainable = load_trainable(parent.spec)
    except ClassifierError as exc:
        raise HTTPException(422, f"model {parent.name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - an unreadable model file is reported, not a 500
        raise HTTPException(
            422, f"model {parent.name!r} could not be loaded for hardening: {type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    if tuple(trainable.card.classes) != CLASS_NAMES:
        raise HTTPException(
            422,
            f"model {parent.name!r}: hardening on MIT-BIH needs the classes "
            f"{list(CLASS_NAMES)} (its training data's labels), the card has "
            f"{list(trainable.card.classes)}",
        )


@router.get(
    "/hardening-jobs/{job_id}", response_model=HardeningJobPublic, responses={**_ERRORS, 404: {"model": Problem}}
)
def read_hardening_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    key: Annotated[ApiKey, Access("hardening.read", "hardening_job", ADMINS)],
) -> HardeningJobPublic:
    """A hardening job: status, progress 0-100, the error when failed, and when done the new model's name,
    SHA-256, parent and card summary (its full card is on ``GET /models``)."""
    audit_object(request, object_id=job_id[:64])
    row = session.get(HardeningJob, job_id)
    if row is None:
        raise not_found("hardening job", job_id)
    return public_job(row)
