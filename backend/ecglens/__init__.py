"""ECG Lens: explain and stress-test black-box ECG classifiers with a reinforcement-learning agent.

Public entry points (docs/architecture.md, "Seams"; docs/api.md for REST):

- ``read_record(path_or_bytes, filename=None) -> Ecg``
- ``load_classifier(spec) -> Classifier``  (``"builtin"``, ``.pt``, ``.onnx``, ``http(s)://``)
- ``explain(ecg, classifier, *, distortions=None, query_budget=..., seed=0) -> Explanation``
- ``robustness(ecg, classifier, ...) -> RobustnessReport``
- ``screen(ecg, classifier) -> Screening``  (every window of a whole recording, in batched calls)

Imports are lazy: every ``import ecglens.<module>`` runs this file first, so it loads nothing beyond the value
types; the readers (wfdb, pandas, scipy), the classifiers and the explainer load when first called.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ecglens.ecg import Ecg, normalize_lead
from ecglens.errors import ClassifierError, QueryBudgetExceeded, RecordError

__version__ = "0.1.0"
__all__ = [
    "Ecg",
    "RecordError",
    "ClassifierError",
    "QueryBudgetExceeded",
    "normalize_lead",
    "read_record",
    "load_classifier",
    "explain",
    "robustness",
    "screen",
    "__version__",
]


def read_record(path_or_bytes: Any, filename: str | None = None, **kwargs: Any) -> Ecg:
    from ecglens.formats import read_record as _read

    return _read(path_or_bytes, filename=filename, **kwargs)


def load_classifier(spec: Any, **kwargs: Any):
    from ecglens.classifiers import load_classifier as _load

    return _load(spec, **kwargs)


def explain(ecg: Ecg, classifier: Any, **kwargs: Any):
    from ecglens.agent.explain import explain as _explain

    return _explain(ecg, classifier, **kwargs)


def robustness(ecg: Ecg, classifier: Any, **kwargs: Any):
    from ecglens.robustness import robustness as _robustness

    return _robustness(ecg, classifier, **kwargs)


def screen(ecg: Ecg, classifier: Any, **kwargs: Any):
    from ecglens.screening import screen as _screen

    return _screen(ecg, classifier, **kwargs)


class _Package(types.ModuleType):
    """The ``ecglens`` package. Importing the submodule ``ecglens.robustness`` would rebind the public function
    ``ecglens.robustness`` to that module (the import system sets the parent's attribute), so keep the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "robustness" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
