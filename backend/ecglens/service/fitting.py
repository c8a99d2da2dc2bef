"""Whether a registered model can analyse a record, and in words a clinician can act on when it cannot.

The verdict is the explainer's own: `ecglens.classifiers.fit.fit_record` on a blank stand-in of the record
(its lead names and rate) with the loaded classifier, so whatever lead sets a classifier accepts (stand-ins
such as II for MLII, its card's ``lead_stand_ins``, or any lead set at all) are honoured. When a model cannot
be loaded here, its stored card is asked the same question. Job failures get the same treatment: the reason
stored on a failed analysis is a sentence, not an exception's text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ecglens.classifiers.fit import fit_record
from ecglens.ecg import LEAD_STAND_INS, Ecg, normalize_lead
from ecglens.errors import ClassifierError, QueryBudgetExceeded, RecordError
from ecglens.service.classifier_cache import CLASSIFIERS
from ecglens.service.db import Model, Record
from ecglens.service.schemas import ModelFit

log = logging.getLogger("ecglens.fitting")


class _CardView:
    """The fields `fit_record` reads, from a stored model card (when the model itself cannot be loaded)."""

    def __init__(self, card: dict[str, Any]):
        self.lead_names = tuple(card.get("leads") or ())
        self.sampling_rate = float(card.get("sampling_rate") or 0) or 1.0
        self.window_s = float(card.get("window_s") or 10.0)
        self.class_names = tuple(card.get("classes") or ())
        self.lead_stand_ins = card.get("lead_stand_ins") or {}


def _classifier(model: Model) -> Any:
    try:
        return CLASSIFIERS.get(model)
    except Exception:  # noqa: BLE001 - a model that does not load here is judged by its card
        log.warning("model %s could not be loaded to check the fit; using its card", model.name, exc_info=True)
        return _CardView(model.card or {})


def _missing(classifier: Any, leads: Sequence[str]) -> list[str]:
    """The classifier's leads the record cannot supply (directly, by a standard stand-in, or by the card's)."""
    have = {normalize_lead(x) for x in leads}
    card = getattr(classifier, "lead_stand_ins", None) or {}
    out = []
    for lead in getattr(classifier, "lead_names", ()):
        name = normalize_lead(lead)
        options = (name, *LEAD_STAND_INS.get(name, ()), *card.get(name, ()))
        if not any(normalize_lead(o) in have for o in options):
            out.append(name)
    return out


def check_fit(model: Model, leads: Sequence[str], fs: float) -> tuple[bool, list[str], str | None]:
    """``(fits, leads the model asks for, reason when it does not)`` for a record with ``leads`` at ``fs`` Hz."""
    classifier = _classifier(model)
    needs = [str(x) for x in getattr(classifier, "lead_names", ())]
    blank = Ecg(signal=np.zeros((len(leads), max(2, int(fs))), dtype=np.float32), fs=float(fs), leads=tuple(leads))
    try:
        fit_record(blank, classifier)
    except (KeyError, RecordError, ValueError):
        missing = _missing(classifier, leads) or needs
        plural = "s" if len(missing) > 1 else ""
        return (
            False,
            needs,
            (f"it needs lead{plural} {', '.join(missing)}, and the record has {', '.join(leads) or 'no leads'}"),
        )
    return True, needs, None


def model_fits(session: Session, record: Record) -> list[ModelFit]:
    """Every registered model's fit for ``record``, with advice on what would fit when one does not."""
    models = session.scalars(select(Model).order_by(Model.created_at)).all()
    verdicts = [(m, *check_fit(m, record.leads, record.fs)) for m in models]
    fitting = [m.name for m, ok, _, _ in verdicts if ok]
    out = []
    for model, ok, needs, reason in verdicts:
        advice = None if ok else advice_for(record.leads, fitting)
        out.append(ModelFit(model=model.name, fits=ok, needs=needs, reason=reason, advice=advice))
    return out


def advice_for(leads: Sequence[str], fitting: Sequence[str]) -> str:
    """What would analyse a record with ``leads``, given the registered models that fit it."""
    if fitting:
        return f"Models that fit this record: {', '.join(fitting)}."
    return (
        f"No registered model fits this record: an administrator can register one whose model card lists "
        f"leads this record has ({', '.join(leads)}), or upload a recording with the leads a registered "
        "model needs."
    )


def refusal(session: Session, record: Record, model: Model) -> str | None:
    """The sentence `POST /analyses` answers when ``model`` cannot analyse ``record`` (None when it can)."""
    ok, _, reason = check_fit(model, record.leads, record.fs)
    if ok:
        return None
    others = [
        m.name
        for m in session.scalars(select(Model).where(Model.name != model.name)).all()
        if check_fit(m, record.leads, record.fs)[0]
    ]
    return f"Model {model.name!r} cannot analyse record {record.name!r}: {reason}. {advice_for(record.leads, others)}"


def failure_reason(exc: BaseException) -> str:
    """The reason stored on a failed job: the project's own errors say what is wrong in words; anything else
    is named by kind only (its text goes to the server log)."""
    if isinstance(exc, (RecordError, ClassifierError, QueryBudgetExceeded, LookupError)):
        text = str(exc).strip("'\"")
        return text[:2000]
    return (
        f"The analysis stopped on an internal error ({type(exc).__name__}); the server log has the details. "
        "Try again, or with another model."
    )
