"""`CardClassifier`: what every file- or endpoint-backed adapter shares. The card gives the input shape, scale and
output semantics; a subclass only turns a scaled float32 chunk into raw outputs (`_forward`)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ecglens.classifiers.card import ModelCard
from ecglens.errors import ClassifierError


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[n, classes]`` scores."""
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def to_probabilities(raw: np.ndarray, card: ModelCard) -> np.ndarray:
    """``[n, classes]`` probabilities from raw outputs: sigmoid (multilabel) or softmax of logits, else as is."""
    raw = np.asarray(raw, dtype=np.float64)
    if card.output == "logits":
        return sigmoid(raw) if card.multilabel else softmax(raw)
    return raw


class CardClassifier(ABC):
    """Base of the TorchScript, ONNX and HTTP adapters: card fields, input checks, chunking, logits.

    Parameters
    ----------
    card : ModelCard
        What the model expects and answers.
    source : str
        The model file or URL, named in every error.
    batch_size : int
        Rows per forward call; larger batches are answered chunk by chunk. Default: 256.
    """

    def __init__(self, card: ModelCard, source: str, batch_size: int = 256):
        self.card = card
        self.source = source
        self.batch_size = int(batch_size)
        self.class_names = tuple(card.classes)
        self.modality = card.modality
        self.input_shape = tuple(card.input_shape) if card.input_shape else None
        self.sampling_rate = float(card.sampling_rate)
        self.lead_names = tuple(card.leads)
        self.window_s = float(card.window_s)
        self.multilabel = bool(card.multilabel)
        self.thresholds = dict(card.thresholds)
        self.lead_stand_ins = {lead: tuple(alts) for lead, alts in card.lead_stand_ins.items()}
        self.lead_rule = card.lead_rule

    @property
    def n_samples(self) -> int:
        """Samples per lead in one input."""
        return int(round(self.window_s * self.sampling_rate))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, classes={len(self.class_names)})"

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if self.input_shape is not None:
            return self._check_vision_batch(batch)
        if batch.ndim == 2:
            batch = batch[None]
        want = (len(self.lead_names), self.n_samples)
        if self.lead_rule == "any":
            if batch.ndim == 3 and batch.shape[1] >= 1 and batch.shape[2] == self.n_samples:
                want = tuple(batch.shape[1:])
            else:
                raise ClassifierError(
                    f"{self.source}: input must be [n, leads, {self.n_samples}] (any leads, at "
                    f"{self.sampling_rate:g} Hz), got {list(batch.shape)}"
                )
        if batch.ndim != 3 or tuple(batch.shape[1:]) != want:
            raise ClassifierError(
                f"{self.source}: input must be [n, {want[0]}, {want[1]}] "
                f"({', '.join(self.lead_names)} at {self.sampling_rate:g} Hz), "
                f"got {list(batch.shape)}"
            )
        if not np.isfinite(batch).all():
            raise ClassifierError(f"{self.source}: input holds NaN or infinite samples")
        return batch

    def _check_vision_batch(self, batch: np.ndarray) -> np.ndarray:
        shape = tuple(self.input_shape or ())
        if batch.ndim == len(shape):
            batch = batch[None]
        if batch.ndim != len(shape) + 1 or tuple(batch.shape[1:]) != shape:
            dims = "C, H, W" if self.modality == "image" else "T, C, H, W"
            raise ClassifierError(
                f"{self.source}: input must be [n, {', '.join(map(str, shape))}] ({self.modality} [n, {dims}]), "
                f"got {list(batch.shape)}"
            )
        if not np.isfinite(batch).all():
            raise ClassifierError(f"{self.source}: input holds NaN or infinite values")
        return batch

    @abstractmethod
    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        """Raw outputs ``[m, classes]`` for a scaled float32 chunk ``[m, leads, samples]``."""

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``[n, classes]`` (float64) for float32 ``[n, leads, samples]`` in mV (ECG), or
        ``[n, *input_shape]`` in [0, 1] (image, video)."""
        batch = self._check_batch(batch)
        if batch.shape[0] == 0:
            return np.zeros((0, len(self.class_names)))
        scale = np.float32(self.card.input_scale)
        outs = []
        for a in range(0, batch.shape[0], self.batch_size):
            chunk = batch[a : a + self.batch_size]
            raw = np.asarray(self._forward(chunk * scale if scale != 1 else chunk), dtype=np.float64)
            if raw.shape != (chunk.shape[0], len(self.class_names)):
                raise ClassifierError(
                    f"{self.source}: answered shape {list(raw.shape)} for {chunk.shape[0]} "
                    f"inputs, the card promises [{chunk.shape[0]}, {len(self.class_names)}]"
                )
            outs.append(to_probabilities(raw, self.card))
        out = np.concatenate(outs)
        if not np.isfinite(out).all():
            raise ClassifierError(f"{self.source}: answered non-finite probabilities")
        return out
