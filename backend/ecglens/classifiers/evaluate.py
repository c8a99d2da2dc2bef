"""Per-class figures of a multi-label classifier on labelled windows: AUC, sensitivity and specificity at the
card's operating threshold, support."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ecglens.classifiers.base import Classifier


def class_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                  thresholds: dict[str, float]) -> dict[str, dict[str, Any]]:
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
            "threshold": round(t, 4), "support": pos, "n": int(len(y)),
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
    return [f"{cls}: the {f['support']} validation positives are (almost) perfectly separated (AUC "
            f"{f['auc']:.4f}), so the threshold ({f['threshold']:.3g}, near the lowest positive's probability) is "
            "hardly set by the data; sensitivity on other patients may be far lower. Check it on your own data."
            for cls, f in ((c, figures[c]) for c in separated_classes(figures))
            if f.get("support") and "threshold" in f]


def evaluate(classifier: Classifier, X: np.ndarray, Y: np.ndarray, batch_size: int = 512) -> dict[str, dict]:
    """`class_metrics` of ``classifier`` on windows ``X`` (float32 ``[n, leads, samples]`` mV), targets ``Y``."""
    probs = np.concatenate([classifier.predict_proba(X[a:a + batch_size]) for a in range(0, len(X), batch_size)])
    return class_metrics(Y, probs, classifier.class_names, dict(classifier.thresholds))


def format_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of `class_metrics` output, one row per class."""
    def cell(v: Any) -> str:
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    head = f"{'class':<30} {'AUC':>7} {'sens':>7} {'spec':>7} {'thresh':>7} {'support':>8} {'n':>6}"
    rows = [head, "-" * len(head)]
    for name, m in metrics.items():
        rows.append(f"{name:<30} {cell(m['auc']):>7} {cell(m['sensitivity']):>7} {cell(m['specificity']):>7} "
                    f"{cell(m['threshold']):>7} {m['support']:>8} {m['n']:>6}")
    return "\n".join(rows)
