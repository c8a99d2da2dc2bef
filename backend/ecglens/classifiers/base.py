"""The black-box `Classifier` protocol and the `QueryCounter` every explainer and baseline queries through."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ecglens.errors import QueryBudgetExceeded


@runtime_checkable
class Classifier(Protocol):
    """What ECG Lens may know of a deployed classifier: its card, and its answers. Nothing else.

    Attributes
    ----------
    class_names : tuple of str
        Output classes, ordered like the columns of `predict_proba`.
    sampling_rate : float
        Input sampling rate in Hz.
    lead_names : tuple of str
        Canonical input leads, ordered like the rows of one input.
    window_s : float
        Input length in seconds (``samples = round(window_s * sampling_rate)``).
    multilabel : bool
        True when classes are independent findings (each probability in [0, 1], rows need not sum to 1);
        False when the classes are mutually exclusive (rows sum to 1).
    thresholds : dict of str to float
        Operating threshold per class: a finding is present when its probability reaches it.

    Optional: ``lead_rule`` ("fixed" when absent, or "any": the classifier takes a record's own leads, any number
    and names, in the record's order; `lead_names` then only names the leads it was trained on; see
    `follows_record_leads`).
    """

    class_names: tuple[str, ...]
    sampling_rate: float
    lead_names: tuple[str, ...]
    window_s: float
    multilabel: bool
    thresholds: dict[str, float]

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch.

        Parameters
        ----------
        batch : np.ndarray
            float32 ``[n, leads, samples]`` in mV.

        Returns
        -------
        np.ndarray
            float ``[n, classes]``.
        """
        ...


def follows_record_leads(classifier: Classifier) -> bool:
    """True when ``classifier`` takes a record's own leads (``lead_rule == "any"``) instead of `lead_names`."""
    return getattr(classifier, "lead_rule", "fixed") == "any"


def input_samples(classifier: Classifier) -> int:
    """Samples per lead in one input of ``classifier``."""
    return int(round(classifier.window_s * classifier.sampling_rate))


class QueryCounter:
    """Wraps any classifier and counts every row it is asked about.

    Every explainer, baseline and robustness search goes through one, so query figures are comparable.

    Parameters
    ----------
    classifier : Classifier
        The black box.
    budget : int or None
        Hard cap on rows; a call that would pass it raises `QueryBudgetExceeded` and is not forwarded.
        Default: None (no cap).

    Attributes
    ----------
    queries : int
        Rows answered so far.
    calls : int
        Batched calls made so far.
    """

    def __init__(self, classifier: Classifier, budget: int | None = None):
        self.classifier = classifier
        self.budget = budget
        self.queries = 0
        self.calls = 0

    # The card fields pass through, so a QueryCounter is itself a Classifier.
    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classifier.class_names)

    @property
    def sampling_rate(self) -> float:
        return float(self.classifier.sampling_rate)

    @property
    def lead_names(self) -> tuple[str, ...]:
        return tuple(self.classifier.lead_names)

    @property
    def window_s(self) -> float:
        return float(self.classifier.window_s)

    @property
    def multilabel(self) -> bool:
        return bool(getattr(self.classifier, "multilabel", False))

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(getattr(self.classifier, "thresholds", {}) or {})

    @property
    def remaining(self) -> int | None:
        """Rows left under the budget (None when unbounded)."""
        return None if self.budget is None else max(0, self.budget - self.queries)

    def left_before(self, end: int) -> int:
        """Rows that may still be asked before the tally reaches ``end``, within the budget (if any)."""
        room = end - self.queries
        return room if self.budget is None else min(room, self.budget - self.queries)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 2:
            batch = batch[None]
        n = int(batch.shape[0])
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(f"query budget {self.budget} exceeded: {self.queries} used, {n} more asked")
        out = np.asarray(self.classifier.predict_proba(batch), dtype=np.float64)
        self.queries += n
        self.calls += 1
        return out

    def __getattr__(self, name: str):
        # Anything else (device, card, ...) is the wrapped classifier's.
        return getattr(self.classifier, name)
