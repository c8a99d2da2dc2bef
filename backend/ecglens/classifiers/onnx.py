"""`OnnxClassifier`: an ONNX model (``.onnx``) run with onnxruntime, its model card beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecglens.classifiers.adapter import CardClassifier
from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.errors import ClassifierError


class OnnxClassifier(CardClassifier):
    """An ONNX classifier. Its first input takes float32 ``[n, leads, samples]``; its first output is
    ``[n, classes]``.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    card : str or Path or ModelCard or None
        The model card. Default: None (``path`` with suffix ``.json``).
    device : str
        "auto" (CUDAExecutionProvider when onnxruntime has it), "cpu" or "cuda". Default: "auto".
    batch_size : int
        Rows per run. Default: 256.
    threads : int or None
        onnxruntime intra-op threads. Default: None (onnxruntime's choice).
    """

    def __init__(
        self,
        path: str | Path,
        card: str | Path | ModelCard | None = None,
        *,
        device: str = "auto",
        batch_size: int = 256,
        threads: int | None = None,
    ):
        import onnxruntime as ort

        path = Path(path)
        if not path.exists():
            raise ClassifierError(f"{path}: model file not found")
        card = card if isinstance(card, ModelCard) else ModelCard.load(card or card_path_for(path))
        super().__init__(card, str(path), batch_size)
        available = ort.get_available_providers()
        wants_gpu = device.startswith("cuda") or (device == "auto" and "CUDAExecutionProvider" in available)
        providers = ["CUDAExecutionProvider"] if wants_gpu and "CUDAExecutionProvider" in available else []
        providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise ClassifierError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        self._input = self.session.get_inputs()[0].name

    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(chunk, dtype=np.float32)})[0]
