"""Classifiers: the black-box protocol, adapters (TorchScript, ONNX, HTTP), the built-in model and its training.

``load_classifier(spec)`` is the one way in: ``"builtin"``, a model name under ``models/`` (e.g.
``"transfer_gru"``), a TorchScript ``.pt`` path, an ``.onnx`` path, or an ``http(s)://`` endpoint. File models
carry their model card beside them (same stem, ``.json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ecglens.classifiers.base import Classifier, QueryCounter, input_samples
from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.classifiers.http import HttpClassifier
from ecglens.classifiers.onnx import OnnxClassifier
from ecglens.classifiers.torchscript import TorchScriptClassifier
from ecglens.errors import ClassifierError

__all__ = [
    "Classifier",
    "QueryCounter",
    "ModelCard",
    "card_path_for",
    "input_samples",
    "load_classifier",
    "models_dir",
    "BUILTIN",
]

BUILTIN = "builtin"
_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


def models_dir() -> Path:
    """The folder with the shipped models: ``$ECGLENS_MODELS_DIR``, else ``models/`` at the repository root."""
    env = os.environ.get("ECGLENS_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "models"


def load_classifier(
    spec: Any, *, card: str | Path | ModelCard | None = None, device: str = "auto", batch_size: int = 256, **kwargs: Any
) -> Classifier:
    """A `Classifier` for ``spec``.

    Parameters
    ----------
    spec : str or Path or Classifier
        ``"builtin"`` (``models/builtin.pt`` + ``models/builtin.json``); a model name under `models_dir()`
        (``"transfer_gru"`` -> ``models/transfer_gru.pt``, else ``.onnx``); a TorchScript file (``.pt``, ``.pth``,
        ``.ts``); an ONNX file (``.onnx``); an ``http://`` or ``https://`` endpoint (see `ecglens.classifiers.http`).
        A `Classifier` object is returned unchanged.
    card : str or Path or ModelCard or None
        The model card, when not beside the model file (or, for HTTP, not at ``{url}/card``). Default: None.
    device : str
        "auto" (CUDA when available), "cpu" or "cuda[:k]" for local models. Default: "auto".
    batch_size : int
        Rows per forward call / request. Default: 256.
    **kwargs
        Passed to the adapter (e.g. ``timeout_s``, ``retries`` for HTTP; ``threads`` for ONNX).

    Raises
    ------
    ClassifierError
        Unknown spec, missing file, unreadable model or card (the message names the file or URL).
    """
    if not isinstance(spec, (str, Path)):
        if isinstance(spec, Classifier):
            return spec
        raise ClassifierError(f"not a classifier spec: {spec!r}")
    text = str(spec).strip()
    if text.lower().startswith(("http://", "https://")):
        return HttpClassifier(text, card, batch_size=batch_size, **kwargs)
    path = Path(text).expanduser()
    if text == BUILTIN or (not path.suffix and os.sep not in text and "/" not in text):
        name = BUILTIN if text == BUILTIN else text
        for suffix in (".pt", ".onnx"):
            if (models_dir() / f"{name}{suffix}").exists():
                path = models_dir() / f"{name}{suffix}"
                break
        else:
            if text == BUILTIN or not path.exists():
                raise ClassifierError(
                    f"{models_dir() / (name + '.pt')}: model {name!r} not found "
                    f"(train it with `ecglens train-classifier`)"
                )
    suffix = path.suffix.lower()
    if suffix in _TORCHSCRIPT_SUFFIXES:
        return TorchScriptClassifier(path, card, device=device, batch_size=batch_size)
    if suffix == ".onnx":
        return OnnxClassifier(path, card, device=device, batch_size=batch_size, **kwargs)
    raise ClassifierError(
        f"{text}: unknown classifier spec; expected 'builtin', a model name under "
        f"{models_dir()}, a TorchScript file ({', '.join(_TORCHSCRIPT_SUFFIXES)}), an .onnx "
        f"file or an http(s):// URL"
    )
