"""The parent: a classifier whose weights we hold, loaded as a trainable TorchScript module."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecglens.classifiers import load_classifier
from ecglens.classifiers.card import ModelCard
from ecglens.classifiers.torchscript import TorchScriptClassifier
from ecglens.errors import ClassifierError


@dataclass
class Trainable:
    """A parent classifier as a trainable TorchScript module.

    module : the loaded ``torch.jit.ScriptModule`` (CPU).
    card : its `ModelCard`.
    path : the ``.pt`` file.
    sha256 : hex SHA-256 of that file.
    calibrated : True when the module is the built-in `Calibrated` wrapper (a logit network ``net`` and Platt
        buffers ``a``, ``b``); then the network is fine-tuned on logits and the Platt scaling refitted.
    """

    module: Any
    card: ModelCard
    path: Path
    sha256: str
    calibrated: bool

    def logits_net(self) -> Any:
        """The part that is trained: ``module.net`` for a `Calibrated` module, else the module."""
        return self.module.net if self.calibrated else self.module


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_trainable(spec: str | Path) -> Trainable:
    """The parent named by ``spec`` as a trainable module.

    Parameters
    ----------
    spec : str or Path
        ``"builtin"``, a model name under ``models/``, or a TorchScript file with its card beside it.

    Raises
    ------
    ClassifierError
        The spec is not a TorchScript model (ONNX, HTTP: we do not hold the weights), or its module has no
        trainable floating-point parameters (e.g. a frozen or quantised TorchScript file); the message names the
        file.
    """
    import torch

    clf = load_classifier(spec, device="cpu")
    if not isinstance(clf, TorchScriptClassifier):
        raise ClassifierError(
            f"{getattr(clf, 'source', spec)}: cannot harden a {type(clf).__name__}: hardening "
            f"fine-tunes weights, so it needs the built-in model or a TorchScript (.pt) file"
        )
    path = Path(clf.source)
    module = torch.jit.load(str(path), map_location="cpu")
    params = [p for p in module.parameters() if p.is_floating_point()]
    if not params:
        raise ClassifierError(
            f"{path}: no trainable floating-point parameters (a frozen or quantised TorchScript "
            f"module?); hardening needs a model whose weights can be fine-tuned"
        )
    for p in params:
        p.requires_grad_(True)
    calibrated = (
        getattr(module, "original_name", "") == "Calibrated"
        and hasattr(module, "net")
        and hasattr(module, "a")
        and hasattr(module, "b")
    )
    return Trainable(module, clf.card, path, file_sha256(path), calibrated)
