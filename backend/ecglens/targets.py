"""What is explained: the diagnosed findings (`Target`, `diagnosed_targets`), which class names mean "no finding"
(`is_normal`), and which window of a long record is explained (`explained_window`) or tested for robustness
(`window_for_label`). One home for these rules, shared by the explainer, the baselines and the robustness report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecglens.classifiers.base import Classifier, QueryCounter, input_samples
from ecglens.classifiers.fit import fit_record, window_starts
from ecglens.ecg import Ecg
from ecglens.errors import RecordError

NORMAL_NAMES = ("n", "nsr", "norm", "normal", "sinus rhythm", "normal sinus rhythm")


def is_normal(label: str) -> bool:
    """Whether a class name means "no finding" (normal / sinus rhythm)."""
    name = label.strip().lower()
    return name in NORMAL_NAMES or name.startswith("normal")


@dataclass(frozen=True)
class Target:
    """The diagnosed class an episode tries to flip.

    index : column of the class in ``predict_proba``.
    label : its name.
    threshold : the probability below which the diagnosis counts as flipped (multilabel), else unused.
    multilabel : multilabel rule (probability below ``threshold``) or argmax rule (another class wins).
    """

    index: int
    label: str
    threshold: float
    multilabel: bool

    def flipped(self, probs: np.ndarray) -> np.ndarray:
        """bool ``[n]`` for probability rows ``[n, classes]``."""
        probs = np.atleast_2d(probs)
        if self.multilabel:
            return probs[:, self.index] < self.threshold
        return np.argmax(probs, axis=1) != self.index


def diagnosed_targets(probs: np.ndarray, classifier: Classifier) -> list[Target]:
    """The findings to explain, most probable first, for one probability row ``[classes]``.

    Multilabel: every class at or above its threshold (flip = falls below it); with none, the most probable
    class, flipped when it falls below half its probability. Mutually exclusive classes: the argmax class
    (flip = another class becomes the argmax).
    """
    names = tuple(classifier.class_names)
    probs = np.asarray(probs, dtype=np.float64).ravel()
    if not getattr(classifier, "multilabel", False):
        i = int(np.argmax(probs))
        return [Target(i, names[i], 0.5, False)]
    thresholds = getattr(classifier, "thresholds", {}) or {}
    thr = np.array([float(thresholds.get(n, 0.5)) for n in names])
    found = [int(i) for i in np.argsort(-probs, kind="stable") if probs[i] >= thr[i]]
    if found:
        return [Target(i, names[i], float(thr[i]), True) for i in found]
    i = int(np.argmax(probs))
    return [Target(i, names[i], float(probs[i]) / 2.0, True)]


def choose_target(probs: np.ndarray, classifier: Classifier, label: str | None) -> Target:
    """The diagnosis to test and its flip rule (`diagnosed_targets`, or the class ``label`` names)."""
    targets = diagnosed_targets(probs, classifier)
    if label is None:
        return targets[0]
    names = tuple(classifier.class_names)
    if label not in names:
        raise ValueError(f"label {label!r} is not a class of this classifier ({', '.join(names)})")
    i = names.index(label)
    for t in targets:
        if t.index == i:
            return t
    if classifier.multilabel:
        thr = float((classifier.thresholds or {}).get(label, 0.5))
        return Target(i, label, thr, True)
    return Target(i, label, 0.5, False)


def explained_window(ecg: Ecg, counter: QueryCounter, start_s: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """The ``[leads, samples]`` input to explain, the diagnosis on it ``[classes]``, and its start (s).

    The record is fitted to the classifier; a record longer than its window is explained at ``start_s`` or, when
    None, in the window where a non-normal finding is most probable (over its threshold), found with one batched
    query of at most half the budget's rows (windows evenly thinned out beyond that)."""
    try:
        fitted = fit_record(ecg, counter)
    except KeyError as exc:
        raise RecordError(ecg.name or None, str(exc).strip("'\"")) from None
    if not np.all(np.isfinite(fitted.signal)):
        raise RecordError(ecg.name or None, "signal holds NaN or infinite samples")
    n = input_samples(counter)
    fs = fitted.fs
    sig = fitted.signal
    if fitted.n_samples <= n:
        x = np.zeros((fitted.n_leads, n), dtype=np.float32)
        x[:, : fitted.n_samples] = sig
        return x, counter.predict_proba(x[None])[0], 0.0
    if start_s is not None:
        a = int(round(start_s * fs))
        if not 0 <= a < fitted.n_samples:
            raise ValueError(f"start_s {start_s} s is outside the {fitted.duration_s:.2f} s record")
        a = min(a, fitted.n_samples - n)
        x = sig[:, a : a + n].copy()
        return x, counter.predict_proba(x[None])[0], a / fs
    starts = window_starts(fitted.n_samples, n)
    cap = max(1, (counter.remaining or 1) // 2)  # never spend more than half the budget on choosing
    if len(starts) > cap:
        starts = [starts[int(i)] for i in np.linspace(0, len(starts) - 1, cap).round().astype(int)]
    batch = np.stack([sig[:, a : a + n] for a in starts])
    probs = counter.predict_proba(batch)
    names = tuple(counter.class_names)
    thresholds = counter.thresholds
    thr = np.array([thresholds.get(c, 0.5) for c in names])
    abnormal = np.array([not is_normal(c) for c in names])
    cols = abnormal if abnormal.any() else np.ones_like(abnormal)
    score = (probs[:, cols] / (thr[cols] if counter.multilabel else 1.0)).max(axis=1)
    best = int(np.argmax(score))
    return batch[best], probs[best], starts[best] / fs


def window_for_label(
    fitted: Ecg, counter: QueryCounter, n: int, start_s: float | None, label: str | None
) -> tuple[np.ndarray, np.ndarray, float]:
    """(window float32 ``[leads, n]``, its probabilities ``[classes]``, its start in s) with one query: the window at
    ``start_s``, else the one where ``label`` (or, when None, a non-normal diagnosis) is most clearly present."""
    sig = fitted.signal
    if sig.shape[1] < n:
        sig = np.pad(sig, ((0, 0), (0, n - sig.shape[1])))
    if start_s is not None:
        a = int(round(float(start_s) * fitted.fs))
        if not 0 <= a < max(fitted.n_samples, 1):
            raise ValueError(f"start_s {start_s} s is outside the {fitted.duration_s:.2f} s record")
        a = min(a, sig.shape[1] - n)
        window = sig[:, a : a + n].copy()
        return window, counter.predict_proba(window[None])[0], a / fitted.fs
    starts = window_starts(sig.shape[1], n)
    batch = np.stack([sig[:, a : a + n] for a in starts])
    probs = counter.predict_proba(batch)
    best = int(np.argmax([_window_score(p, counter, label) for p in probs]))
    return batch[best].copy(), probs[best], starts[best] / fitted.fs


def _window_score(probs: np.ndarray, classifier: Classifier, label: str | None) -> float:
    """Higher for the window to test: a non-normal diagnosis first (+1), then its probability (over its
    threshold for multilabel classifiers)."""
    t = choose_target(probs, classifier, label)
    p = float(probs[t.index])
    if t.multilabel:
        p = p / max(t.threshold, 1e-9)
        present = probs[t.index] >= t.threshold
    else:
        present = int(np.argmax(probs)) == t.index
    bonus = 1.0 if (label is not None or not is_normal(t.label)) and present else 0.0
    return bonus * 1e6 + p
