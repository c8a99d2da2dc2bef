"""Fitting a record to a classifier's input: resample, map leads, cut into windows."""

from __future__ import annotations

import numpy as np

from ecglens.classifiers.base import Classifier, follows_record_leads, input_samples
from ecglens.ecg import Ecg, normalize_lead


def fit_record(ecg: Ecg, classifier: Classifier) -> Ecg:
    """``ecg`` resampled to the classifier's rate with its leads in the classifier's order.

    II stands in for MLII (and the other stand-ins in `ecglens.ecg.LEAD_STAND_INS`); beyond those, a lead the
    model card lists in ``lead_stand_ins`` (e.g. V5 for V1 in a model trained on MIT-BIH's mixed second leads)
    takes a missing lead's place, and ``metadata["lead_stand_ins"]`` says which did. Raises KeyError naming the
    missing lead when the record lacks one the classifier needs. A classifier that follows the record's leads
    (`follows_record_leads`: the built-in) gets all of them, in the record's order, names normalised.
    """
    if follows_record_leads(classifier):
        if ecg.n_leads < 1:
            raise KeyError("record has no leads")
        fitted = ecg.replace(leads=tuple(normalize_lead(x) for x in ecg.leads))
        return fitted.resample(classifier.sampling_rate)
    card_stand_ins = getattr(classifier, "lead_stand_ins", None) or {}
    rows, used = [], {}
    for lead in classifier.lead_names:
        try:
            rows.append(ecg.lead_index(lead))
            continue
        except KeyError:
            alternatives = [alt for alt in card_stand_ins.get(normalize_lead(lead), ()) if alt in ecg.leads]
            if not alternatives:
                raise
        rows.append(ecg.leads.index(alternatives[0]))
        used[normalize_lead(lead)] = alternatives[0]
    metadata = dict(ecg.metadata, lead_stand_ins=used) if used else ecg.metadata
    fitted = ecg.replace(
        signal=ecg.signal[rows], leads=tuple(normalize_lead(x) for x in classifier.lead_names), metadata=metadata
    )
    return fitted.resample(classifier.sampling_rate)


def input_leads(ecg: Ecg, classifier: Classifier) -> tuple[str, ...]:
    """The lead names of the rows `fit_record` gives ``classifier`` for ``ecg``."""
    if follows_record_leads(classifier):
        return tuple(normalize_lead(x) for x in ecg.leads)
    return tuple(normalize_lead(x) for x in classifier.lead_names)


def window_starts(n_samples: int, window: int, hop: int | None = None) -> list[int]:
    """Start samples of consecutive windows covering ``n_samples``; the last one is aligned to the end.

    A record shorter than one window gives ``[0]`` (it is zero-padded by `windows`).
    """
    hop = hop or window
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def windows(ecg: Ecg, classifier: Classifier, hop_s: float | None = None) -> tuple[np.ndarray, list[float]]:
    """A fitted record cut into classifier inputs.

    Returns
    -------
    batch : np.ndarray
        float32 ``[n_windows, leads, samples]``; a record shorter than one window is zero-padded at the end.
    starts_s : list of float
        Start time in seconds of each window in the fitted record.
    """
    fitted = fit_record(ecg, classifier)
    n = input_samples(classifier)
    hop = int(round(hop_s * fitted.fs)) if hop_s else n
    starts = window_starts(fitted.n_samples, n, hop)
    batch = np.zeros((len(starts), fitted.n_leads, n), dtype=np.float32)
    for i, a in enumerate(starts):
        piece = fitted.signal[:, a : a + n]
        batch[i, :, : piece.shape[1]] = piece
    return batch, [a / fitted.fs for a in starts]
