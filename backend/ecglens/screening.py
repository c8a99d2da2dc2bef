"""Whole recordings: `screen` runs a classifier over every window of a record (a 30-min Holter is 181 windows of
10 s) in batched calls and says where each finding is, how probable, and how much of the record it takes.

It works for any `Classifier`: the record is fitted to the classifier's rate and leads (`fit_record`, so lead
stand-ins and any lead set a classifier accepts apply), cut into consecutive windows of the classifier's own
length (the last one aligned to the record's end), and asked about in batches. A finding is present in a
window by the explainer's rule (`targets.diagnosed_targets`): at or above its threshold for multilabel
classifiers, the most probable class for mutually exclusive ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecglens.classifiers import load_classifier
from ecglens.classifiers.base import Classifier, QueryCounter, input_samples
from ecglens.classifiers.fit import fit_record, window_starts
from ecglens.ecg import Ecg
from ecglens.errors import RecordError
from ecglens.formats import read_record


def is_normal_class(label: str) -> bool:
    """Whether a class name means "no finding" (normal / sinus rhythm)."""
    name = label.strip().lower()
    return name in ("n", "nsr", "norm", "normal", "sinus rhythm", "normal sinus rhythm") or name.startswith("normal")


@dataclass
class Screening:
    """A classifier's answers over a whole record.

    classes : the classifier's class names (the columns of ``probabilities``).
    starts_s : float ``[n_windows]``, start of each window in seconds from the record's start.
    window_s : length of each window (the classifier's input) in seconds.
    probabilities : float ``[n_windows, classes]``.
    present : bool ``[n_windows, classes]``, the finding is diagnosed in that window.
    burden : class -> share of windows in which it is present, in [0, 1].
    thresholds : class -> operating threshold used (multilabel classifiers).
    multilabel : whether the classes are independent findings.
    duration_s : the record's length in seconds.
    queries : classifier rows used (one per window).
    """

    classes: tuple[str, ...]
    starts_s: np.ndarray
    window_s: float
    probabilities: np.ndarray
    present: np.ndarray
    burden: dict[str, float]
    thresholds: dict[str, float]
    multilabel: bool
    duration_s: float
    queries: int

    @property
    def n_windows(self) -> int:
        return int(self.starts_s.size)

    def findings(self) -> list[str]:
        """Non-normal classes present in at least one window, highest burden first (ties: peak probability)."""
        out = [c for i, c in enumerate(self.classes) if not is_normal_class(c) and self.present[:, i].any()]
        return sorted(out, key=lambda c: (-self.burden[c], -self.peak(c)[1], self.classes.index(c)))

    def peak(self, label: str) -> tuple[float, float]:
        """``(start_s, probability)`` of the window where ``label`` is most probable (the earliest on ties)."""
        i = self.classes.index(label)
        k = int(np.argmax(self.probabilities[:, i]))
        return float(self.starts_s[k]), float(self.probabilities[k, i])

    def most_abnormal_window(self) -> float:
        """Start of the window where a non-normal finding is most probable relative to its threshold (the
        window `ecglens.explain` picks when given no start)."""
        cols = np.array([not is_normal_class(c) for c in self.classes])
        if not cols.any():
            cols[:] = True
        thr = np.array([self.thresholds.get(c, 0.5) for c in self.classes]) if self.multilabel else 1.0
        score = (self.probabilities / thr)[:, cols].max(axis=1)
        return float(self.starts_s[int(np.argmax(score))])

    def windows_to_explain(self, limit: int = 3) -> list[tuple[str, float]]:
        """``(finding, start_s)`` of the most probable window of each finding, at most ``limit``, one per
        window; with no finding anywhere, the most abnormal-looking window under the most probable class."""
        chosen: list[tuple[str, float]] = []
        for label in self.findings():
            start, _ = self.peak(label)
            if all(abs(start - s) > 1e-9 for _, s in chosen):
                chosen.append((label, start))
            if len(chosen) >= limit:
                break
        if not chosen:
            start = self.most_abnormal_window()
            k = int(np.argmin(np.abs(self.starts_s - start)))
            chosen.append((self.classes[int(np.argmax(self.probabilities[k]))], start))
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "starts_s": [round(float(s), 4) for s in self.starts_s],
            "window_s": float(self.window_s),
            "probabilities": np.round(self.probabilities.astype(float), 4).tolist(),
            "present": self.present.astype(bool).tolist(),
            "burden": {c: round(float(b), 4) for c, b in self.burden.items()},
            "thresholds": {c: float(t) for c, t in self.thresholds.items()},
            "multilabel": bool(self.multilabel),
            "findings": self.findings(),
            "duration_s": float(self.duration_s),
            "queries": int(self.queries),
        }


def screen(
    ecg: Ecg, classifier: Classifier, *, batch_size: int = 256, progress: Callable[[float], None] | None = None
) -> Screening:
    """Run ``classifier`` over every window of ``ecg``.

    Parameters
    ----------
    ecg : Ecg
        The record, at any rate and with any leads the classifier can be fitted to.
    classifier : Classifier
        The black box; its ``window_s``, ``sampling_rate``, ``lead_names``, thresholds and ``predict_proba``.
    batch_size : int
        Windows per call. Default: 256 (a 30-min record at 10-s windows is one call).
    progress : callable or None
        Called with the fraction of windows done after each call. Default: None.

    Returns
    -------
    Screening

    Raises
    ------
    RecordError
        The record lacks a lead the classifier needs (the message names it and the record's leads).
    """
    if not isinstance(ecg, Ecg):
        raise TypeError(f"screen needs an Ecg, got {type(ecg).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    counter = QueryCounter(classifier)
    try:
        fitted = fit_record(ecg, counter)
    except KeyError as exc:
        raise RecordError(
            ecg.name or None,
            f"{str(exc).strip(chr(34) + chr(39))}; the model reads "
            f"{', '.join(counter.lead_names)}: use a model whose card lists leads "
            f"this record has",
        ) from None
    n = input_samples(counter)
    starts = window_starts(fitted.n_samples, n)
    names = tuple(counter.class_names)
    rows = []
    for first in range(0, len(starts), batch_size):
        chunk = starts[first : first + batch_size]
        batch = np.zeros((len(chunk), fitted.n_leads, n), dtype=np.float32)
        for j, a in enumerate(chunk):
            piece = fitted.signal[:, a : a + n]
            batch[j, :, : piece.shape[1]] = piece  # a record shorter than one window is zero-padded
        rows.append(np.asarray(counter.predict_proba(batch), dtype=np.float64).reshape(len(chunk), len(names)))
        if progress:
            progress(min(1.0, (first + len(chunk)) / len(starts)))
    probs = np.concatenate(rows, axis=0)
    multilabel = counter.multilabel
    thresholds = {c: float(counter.thresholds.get(c, 0.5)) for c in names}
    if multilabel:
        present = probs >= np.array([thresholds[c] for c in names])[None, :]
    else:
        present = np.zeros_like(probs, dtype=bool)
        present[np.arange(len(starts)), np.argmax(probs, axis=1)] = True
    burden = {c: float(present[:, i].mean()) for i, c in enumerate(names)}
    return Screening(
        classes=names,
        starts_s=np.array(starts, dtype=np.float64) / fitted.fs,
        window_s=n / fitted.fs,
        probabilities=probs,
        present=present,
        burden=burden,
        thresholds=thresholds,
        multilabel=multilabel,
        duration_s=float(ecg.duration_s),
        queries=int(counter.queries),
    )


def register(subparsers: Any) -> None:
    """The ``ecglens screen`` command."""
    p = subparsers.add_parser(
        "screen",
        help="run a classifier over every window of a whole recording",
        description="Screen a whole recording: the classifier over every window, the "
        "burden of each finding and where each is most probable.",
    )
    p.add_argument(
        "record",
        nargs="+",
        help="the record: a WFDB .hea (its signal files beside it, or listed "
        "too), EDF, CSV, JSON, DICOM, aECG XML or a .zip",
    )
    p.add_argument("--model", default="builtin", help="load_classifier spec (default: builtin)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse WFDB files with checksum mismatches, unknown dates or missing initial values instead of warning",
    )
    p.add_argument("--json", action="store_true", help="print the Screening as JSON")
    p.set_defaults(func=_cmd_screen)


def _cmd_screen(args: Any) -> int:
    import json
    import sys
    from pathlib import Path

    paths = [Path(p) for p in args.record]
    if len(paths) == 1:
        ecg = read_record(paths[0], strict=args.strict)
    else:
        ecg = read_record({p.name: p for p in paths}, filename=paths[0].name, strict=args.strict)
    for warning in ecg.metadata.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    clf = load_classifier(args.model)
    result = screen(ecg, clf)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(
        f"{ecg.name or paths[0].name}: {result.n_windows} windows of {result.window_s:g} s over "
        f"{result.duration_s:.1f} s ({args.model})"
    )
    for label in result.classes:
        start, p = result.peak(label)
        print(f"  {label:<32} burden {100 * result.burden[label]:5.1f}%   most probable {p:.2f} at {start:.1f} s")
    windows = ", ".join(f"{label} at {start:.1f} s" for label, start in result.windows_to_explain())
    print(f"windows to explain: {windows}")
    return 0
