"""Request and response bodies (pydantic v2), one family per resource, with OpenAPI examples."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
Role = Literal["clinician", "auditor", "admin", "service"]
Status = Literal["queued", "running", "done", "failed"]


class ListOf(BaseModel, Generic[T]):
    """A page of items and how many match in all."""

    data: list[T]
    count: int


class Problem(BaseModel):
    """An error: ``detail`` says what is wrong (for 422 on uploads, the reader's message)."""

    detail: Any = Field(examples=["100.dat: WFDB file without its header 100.hea in the upload"])


# --- records ---------------------------------------------------------------------------------------------
class RecordFile(BaseModel):
    """One uploaded file of a record. ``role``: header, signal, annotation, or record (a one-file format);
    annotation files also carry their annotator (extension), beat and rhythm-episode counts and warnings."""

    filename: str
    sha256: str
    size: int
    container: str | None = None
    role: str | None = None
    annotator: str | None = None
    beats: int | None = None
    rhythm_episodes: int | None = None
    beat_counts: dict[str, int] | None = None
    warnings: list[str] | None = None


class LatestAnalysis(BaseModel):
    """The newest analysis of a record (in record lists, so a list shows where each record stands)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    status: str
    progress: float
    created_at: str


class Intervals(BaseModel):
    """Median intervals in ms over the measured beats (None: not measurable, e.g. no P waves in AF)."""

    RR: float | None = None
    PR: float | None = None
    QRS: float | None = None
    QT: float | None = None
    QTc: float | None = None


class Diagnosis(BaseModel):
    code: str
    display: str | None = None
    system: str | None = None


class Patient(BaseModel):
    """The header's patient fields (clinicians and admins only)."""

    id: str | None = None
    age: float | None = None
    sex: str | None = None
    diagnoses: list[Diagnosis] = []


class RecordPublic(BaseModel):
    """Record metadata. Header fields (patient data) are stored but not returned here; one record read by a
    clinician or an admin (``GET /records/{id}``) adds its ``patient`` fields, and every single-record read the
    clinical basics measured on the ECG (``heart_rate_bpm``, ``intervals_ms``, how in ``basics``)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2c0a9e5b6d4c1e8f7a6b5c4d3e2f10",
                    "name": "100",
                    "filename": "100.hea",
                    "format": "wfdb",
                    "fs": 360.0,
                    "leads": ["MLII", "V5"],
                    "n_samples": 650000,
                    "duration_s": 1805.56,
                    "files": [{"filename": "100.hea", "sha256": "ab" * 32, "size": 143, "container": None}],
                    "created_by": "9c1f0e2d3b4a5968",
                    "created_at": "2024-05-01T12:00:00.000000Z",
                }
            ]
        },
    )

    id: str
    name: str
    filename: str
    format: str
    fs: float
    leads: list[str]
    n_samples: int
    duration_s: float
    files: list[RecordFile]
    warnings: list[str] = Field(
        default_factory=list,
        description="What the reader read despite a fault in the "
        "files (a checksum mismatch, an unknown date spelling, ...), one sentence each.",
    )
    created_by: str | None
    created_at: str
    latest_analysis: LatestAnalysis | None = None
    heart_rate_bpm: float | None = None
    intervals_ms: Intervals | None = None
    basics: dict[str, Any] | None = Field(
        default=None,
        description="How the basics were measured: lead, "
        "start_s / end_s of the measured stretch, beats, QTc formula, method.",
    )
    patient: Patient | None = None


class RecordAnnotations(BaseModel):
    """The reference annotations uploaded with a record, one entry per file (`ecglens.formats.Annotations`):
    ``beats`` [{time_s, symbol, aami, channel}], ``rhythms`` [{start_s, end_s, label, name}], ``events``,
    ``beat_counts``, ``warnings``."""

    record_id: str
    files: list[dict[str, Any]]


class DistortionKind(BaseModel):
    """A distortion kind an analysis may ask for (``AnalysisCreate.distortions``): its name, and the aliases
    accepted for it."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "baseline_wander", "aliases": ["baseline", "bw", "wander"]}]}
    )

    name: str
    aliases: list[str]


class ModelFit(BaseModel):
    """Whether a registered model can analyse a record; when not, ``reason`` says why and ``advice`` what would."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "builtin",
                    "fits": False,
                    "needs": ["MLII", "V1"],
                    "reason": "needs lead V1, and the record has I, II",
                    "advice": "No registered model fits this record: register one whose model card lists leads the record "
                    "has (I, II).",
                }
            ]
        }
    )

    model: str
    fits: bool
    needs: list[str]
    reason: str | None = None
    advice: str | None = None


class SignalWindow(BaseModel):
    """Samples for display, in mV. Undecimated: ``t0`` + ``dt`` give each sample's time; min/max-decimated
    (``decimated`` true): ``times[lead]`` gives each kept point's time in seconds from the record's start."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "record_id": "3f2c0a9e5b6d4c1e8f7a6b5c4d3e2f10",
                    "fs": 360.0,
                    "leads": ["MLII"],
                    "start_s": 0.0,
                    "end_s": 0.01,
                    "t0": 0.0,
                    "dt": 0.0027778,
                    "decimated": False,
                    "times": None,
                    "values": {"MLII": [-0.145, -0.145, -0.145, -0.145]},
                }
            ]
        }
    )

    record_id: str
    fs: float
    leads: list[str]
    start_s: float
    end_s: float
    t0: float
    dt: float
    decimated: bool
    times: dict[str, list[float]] | None = None
    values: dict[str, list[float]]


# --- analyses --------------------------------------------------------------------------------------------
class AnalysisCreate(BaseModel):
    """What to analyse and how."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "record_id": "3f2c0a9e5b6d4c1e8f7a6b5c4d3e2f10",
                    "model": "builtin",
                    "distortions": ["baseline_wander", "powerline"],
                    "query_budget": 500,
                    "seed": 0,
                    "start_s": 12.0,
                }
            ]
        },
    )

    record_id: str = Field(min_length=1, max_length=64)
    model: str = Field(default="builtin", min_length=1, max_length=200)
    distortions: list[str] | None = Field(
        default=None,
        max_length=20,
        description="Distortion kinds or their aliases (GET /distortions); null = all of them.",
    )
    query_budget: int = Field(default=500, ge=1, le=100_000, description="Most classifier rows the explainer uses.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    start_s: float | None = Field(default=None, ge=0, description="Window start in s; null = explainer picks.")


class AnalysisCreated(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "7d1e...", "status": "queued"}]})

    id: str
    status: Status


class AnalysisPublic(BaseModel):
    """A job's state; when done, ``explanation`` and ``robustness`` hold the result JSON (see explanation.py), with
    the record's ``screening``, the explained ``windows`` and, for annotated records, ``annotations``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "7d1e0c5b9a8f4e3d2c1b0a9f8e7d6c5b",
                    "record_id": "3f2c0a9e5b6d4c1e8f7a6b5c4d3e2f10",
                    "model": "builtin",
                    "distortions": None,
                    "query_budget": 500,
                    "seed": 0,
                    "start_s": None,
                    "status": "done",
                    "progress": 100.0,
                    "error": None,
                    "queries": 812,
                    "attempts": 1,
                    "created_by": "9c1f0e2d3b4a5968",
                    "created_at": "2024-05-01T12:00:00.000000Z",
                    "started_at": "2024-05-01T12:00:00.100000Z",
                    "finished_at": "2024-05-01T12:00:09.900000Z",
                    "duration_s": 9.8,
                    "explanation": {"diagnosis": {"label": "N"}, "segments": []},
                    "robustness": {"label": "N", "score": 0.8},
                }
            ]
        }
    )

    id: str
    record_id: str
    model: str
    distortions: list[str] | None
    query_budget: int
    seed: int
    start_s: float | None
    status: Status
    progress: float
    error: str | None
    queries: int
    attempts: int
    created_by: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    explanation: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    screening: dict[str, Any] | None = Field(
        default=None,
        description="The model over every window of the record (`ecglens.screening.Screening`): "
        "classes, starts_s, window_s, probabilities [windows][classes], present, burden.",
    )
    windows: list[dict[str, Any]] | None = Field(
        default=None,
        description="Each explained window: {finding, start_s, explanation}; the first is "
        "``explanation``. By default the most probable window of each finding (up to 3).",
    )
    annotations: dict[str, Any] | None = Field(
        default=None,
        description="When the record has reference annotations: the annotated beats each explained "
        "window's critical segments cover ({files, windows: [{finding, segments}]}).",
    )
    summary: dict[str, Any] | None = Field(
        default=None,
        description="The plain-language account of the result "
        "(ecglens.reports.summary): headline, text, statements and their "
        "numbers; the PDF report and the FHIR Observation say the same.",
    )


# --- models ----------------------------------------------------------------------------------------------
class ModelPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "builtin",
                    "kind": "builtin",
                    "card": {
                        "name": "builtin",
                        "classes": ["N", "S", "V", "F", "Q"],
                        "sampling_rate": 360,
                        "leads": ["MLII"],
                        "window_s": 10,
                    },
                    "sha256": None,
                    "created_by": None,
                    "created_at": "2024-05-01T12:00:00.000000Z",
                    "endpoint": None,
                }
            ]
        }
    )

    name: str
    kind: Literal["builtin", "torchscript", "onnx", "http"]
    card: dict[str, Any]
    sha256: str | None
    created_by: str | None
    created_at: str
    endpoint: str | None = Field(default=None, description="The URL of an HTTP classifier.")


# --- hardening jobs ------------------------------------------------------------------------------------
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"


class HardenCreate(BaseModel):
    """How to harden a model (`ecglens.hardening`); every field optional."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"new_name": "builtin-hardened-s0", "seed": 0, "epochs": 6, "agent_windows": 64}]
        },
    )

    new_name: str | None = Field(
        default=None,
        pattern=MODEL_NAME_PATTERN,
        description="Registry name of the hardened model (1-100 letters, digits, '_', '.', "
        "'-'); null = '{parent}-hardened-s{seed}'.",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seeds the pool, the data mix and torch.")
    epochs: int | None = Field(
        default=None, ge=1, le=100, description="Fine-tuning epochs; null = the recipe's (`HardenConfig.epochs`)."
    )
    agent_windows: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="DS1 training windows the agent explains for its pool of "
        "minimal flips; 0 = noise only; null = the recipe's "
        "(`HardenConfig.agent_windows`).",
    )
    soup: int | None = Field(
        default=None,
        ge=1,
        le=8,
        description="Fine-tunes averaged into the hardened model (a model soup); 1 is "
        "fastest; null = the recipe's (`HardenConfig.soup`).",
    )


class HardeningParams(BaseModel):
    seed: int
    epochs: int | None
    agent_windows: int | None
    soup: int | None = None


class HardeningJobPublic(BaseModel):
    """A hardening job's state; when done, ``result`` names the new model (listed by ``GET /models``) with its
    card's identity, DS1-validation figures before / after and recipe."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "5a0c9e1d2b3f4a5e6d7c8b9a0f1e2d3c",
                    "parent_model": "builtin",
                    "new_model": "builtin-hardened-s0",
                    "status": "done",
                    "progress": 100.0,
                    "error": None,
                    "params": {"seed": 0, "epochs": 6, "agent_windows": 64},
                    "result": {
                        "name": "builtin-hardened-s0",
                        "kind": "torchscript",
                        "sha256": "ab" * 32,
                        "parent": "builtin",
                        "card": {"name": "builtin-hardened-s0", "parent": "builtin@1"},
                    },
                    "attempts": 1,
                    "created_by": "9c1f0e2d3b4a5968",
                    "created_at": "2024-05-01T12:00:00.000000Z",
                    "started_at": "2024-05-01T12:00:00.100000Z",
                    "finished_at": "2024-05-01T12:17:00.000000Z",
                    "duration_s": 1019.9,
                }
            ]
        },
    )

    id: str
    parent_model: str
    new_model: str
    status: Status
    progress: float
    error: str | None
    params: HardeningParams
    result: dict[str, Any] | None
    attempts: int
    created_by: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_s: float | None


# --- keys ------------------------------------------------------------------------------------------------
class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"role": "service", "name": "ward-7 HIS"}]}
    )

    role: Role
    name: str = Field(min_length=1, max_length=200)


class KeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: Role
    created_at: str
    created_by: str | None
    revoked_at: str | None


class KeyCreated(KeyPublic):
    """The new key; ``token`` is shown this once and cannot be recovered."""

    token: str


# --- audit -----------------------------------------------------------------------------------------------
class AuditEventPublic(BaseModel):
    seq: int
    at: str
    actor_key_id: str | None
    actor_name: str | None
    role: str | None
    action: str
    object_type: str | None
    object_id: str | None
    record_id: str | None
    client: str | None
    status: int
    prev_hash: str
    hash: str


class ChainStatusPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ok": True, "events": 1234, "first_bad_seq": None, "reason": None}]}
    )

    ok: bool
    events: int
    first_bad_seq: int | None
    reason: str | None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    executor: str
    version: str
