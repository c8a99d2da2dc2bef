"""Per-class figures of a multi-label classifier on labelled windows: AUC, sensitivity and specificity at the
card's operating threshold, support."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.classifiers.base import Classifier
from ecglens.ecg import Ecg


def class_metrics(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], thresholds: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Figures per class.

    Parameters
    ----------
    y_true : np.ndarray
        ``[n, classes]`` 0/1 targets.
    probs : np.ndarray
        ``[n, classes]`` probabilities.
    class_names : sequence of str
        Column names.
    thresholds : dict of str to float
        Operating threshold per class (a finding is called when ``prob >= threshold``).

    Returns
    -------
    dict
        ``{class: {"auc", "sensitivity", "specificity", "threshold", "support", "n"}}``; AUC is None when the
        class has no positive or no negative window. ``support`` counts positive windows.
    """
    from sklearn.metrics import roc_auc_score

    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(class_names):
        y = np.asarray(y_true[:, k]) > 0.5
        p = np.asarray(probs[:, k], dtype=np.float64)
        t = float(thresholds.get(name, 0.5))
        called = p >= t
        pos, neg = int(y.sum()), int((~y).sum())
        out[name] = {
            "auc": round(float(roc_auc_score(y, p)), 4) if pos and neg else None,
            "sensitivity": round(float((called & y).sum() / pos), 4) if pos else None,
            "specificity": round(float((~called & ~y).sum() / neg), 4) if neg else None,
            "threshold": round(t, 4),
            "support": pos,
            "n": int(len(y)),
        }
    return out


SEPARATED_AUC = 0.999


def separated_classes(figures: dict[str, dict[str, Any]]) -> list[str]:
    """The classes that windows separate (almost) perfectly (``class_metrics`` figures, AUC >= `SEPARATED_AUC`)."""
    return [cls for cls, f in figures.items() if f.get("auc") is not None and f["auc"] >= SEPARATED_AUC]


def unset_threshold_warnings(figures: dict[str, dict[str, Any]]) -> list[str]:
    """A warning per class that the windows its threshold was picked on separate (almost) perfectly
    (``class_metrics`` figures, AUC >= `SEPARATED_AUC`): Youden's J is then flat across the gap between the classes,
    or set by a few windows, and the lowest positive is taken, so sensitivity on other patients may be far lower
    (the built-in model's AF threshold: validation AUC 0.9998, sensitivity 0.99; DS2 sensitivity 0.47)."""
    return [
        f"{cls}: the {f['support']} validation positives are (almost) perfectly separated (AUC "
        f"{f['auc']:.4f}), so the threshold ({f['threshold']:.3g}, near the lowest positive's probability) is "
        "hardly set by the data; sensitivity on other patients may be far lower. Check it on your own data."
        for cls, f in ((c, figures[c]) for c in separated_classes(figures))
        if f.get("support") and "threshold" in f
    ]


def evaluate(classifier: Classifier, X: np.ndarray, Y: np.ndarray, batch_size: int = 512) -> dict[str, dict]:
    """`class_metrics` of ``classifier`` on windows ``X`` (float32 ``[n, leads, samples]`` mV), targets ``Y``."""
    probs = np.concatenate([classifier.predict_proba(X[a : a + batch_size]) for a in range(0, len(X), batch_size)])
    return class_metrics(Y, probs, classifier.class_names, dict(classifier.thresholds))


def format_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of `class_metrics` output, one row per class."""

    def cell(v: Any) -> str:
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    head = f"{'class':<30} {'AUC':>7} {'sens':>7} {'spec':>7} {'thresh':>7} {'support':>8} {'n':>6}"
    rows = [head, "-" * len(head)]
    for name, m in metrics.items():
        rows.append(
            f"{name:<30} {cell(m['auc']):>7} {cell(m['sensitivity']):>7} {cell(m['specificity']):>7} "
            f"{cell(m['threshold']):>7} {m['support']:>8} {m['n']:>6}"
        )
    return "\n".join(rows)


# -- out-of-database check: PhysioNet/CinC Challenge 2021 12-lead records with SNOMED-CT labels -------------------
# The codes on a record's ``# Dx:`` header line that make each finding present; "normal" = none of these (nor a
# paced rhythm) on the record: its beats are all of AAMI class N, as in the MIT-BIH "normal" windows.
SNOMED_FINDINGS: dict[str, tuple[str, ...]] = {
    "ventricular ectopy": ("164884008", "427172004", "17338001", "11157007", "251180001", "75532003"),
    "supraventricular ectopy": ("284470004", "63593006", "251173003", "164885009"),
    "atrial fibrillation/flutter": ("164889003", "164890007"),
}
SNOMED_PACED: tuple[str, ...] = ("10370003", "251266004")


def snomed_labels(codes: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """float32 ``[classes]`` targets of a record from its SNOMED-CT codes (`SNOMED_FINDINGS`)."""
    codes = {str(c).strip() for c in codes}
    found = {name: bool(codes & set(snomed)) for name, snomed in SNOMED_FINDINGS.items()}
    normal = not any(found.values()) and not codes & set(SNOMED_PACED)
    return np.asarray([normal if name == "normal" else found.get(name, False) for name in class_names], np.float32)


def cinc2021_windows(
    folder: str | Path, fs: float, window_s: float, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str], list[tuple[str, ...]]]:
    """The first ``window_s`` of every CinC 2021 record (``*.hea`` + ``.mat``) in ``folder``, resampled to ``fs``.

    Returns ``(X [n, leads, samples] float32 mV, Y [n, classes], record names, lead names per record)``;
    records with another lead count than the first are skipped (all are 12-lead).
    """
    import wfdb

    xs, ys, names, leads = [], [], [], []
    n = int(round(window_s * fs))
    for hea in sorted(Path(folder).glob("*.hea")):
        rec = wfdb.rdrecord(str(hea.with_suffix("")))
        codes: list[str] = []
        for line in rec.comments:
            key, _, value = line.partition(":")
            if key.strip().lower() == "dx":
                codes += [c.strip() for c in value.split(",") if c.strip()]
        ecg = Ecg(
            signal=np.nan_to_num(rec.p_signal.T).astype(np.float32), fs=float(rec.fs), leads=tuple(rec.sig_name)
        ).resample(fs)
        x = np.zeros((ecg.n_leads, n), np.float32)
        piece = ecg.signal[:, :n]
        x[:, : piece.shape[1]] = piece
        if xs and x.shape != xs[0].shape:
            continue
        xs.append(x)
        ys.append(snomed_labels(codes, class_names))
        names.append(hea.stem)
        leads.append(tuple(ecg.leads))
    return np.stack(xs), np.stack(ys), names, leads
