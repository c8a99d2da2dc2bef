"""The classifiers of registered models, each loaded once per process and kept: the jobs run them, the fit
check (`ecglens.service.fitting`) asks them which leads and rate they take."""

from __future__ import annotations

import threading
from typing import Any

from ecglens.classifiers import load_classifier
from ecglens.classifiers.card import ModelCard
from ecglens.service.config import Settings
from ecglens.service.db import Model


class ClassifierCache:
    """Each model's classifier loaded once per process and kept (keyed by model name and spec)."""

    def __init__(self, device: str | None = None):
        self.device = device  # None: the `Settings.device` of the process (ECGLENS_DEVICE), read on first load
        self._items: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, model: Model) -> Any:
        key = (model.name, model.spec)
        with self._lock:
            if key not in self._items:
                card = ModelCard.from_dict(model.card) if model.kind == "http" and model.card else None
                # One forward pass per agent step: a 12-lead scan step probes ~480 rows, so batch generously.
                device = self.device or Settings().device
                self._items[key] = load_classifier(model.spec, card=card, device=device, batch_size=1024)
            return self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CLASSIFIERS = ClassifierCache()
