"""`TorchScriptClassifier`: a TorchScript module file (``.pt``) with its model card beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecglens.classifiers.adapter import CardClassifier
from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.errors import ClassifierError

# On a CPU, the most input samples (rows x leads x samples) one module call gets: past about this, a forward's
# intermediates no longer stay in cache and come from freshly mapped pages (page faults), so a row costs up to
# 2.5x more (built-in, 12 leads: 0.64 ms a row at 16 rows, 1.6 ms at 256). 2^20 keeps an explanation's calls
# (up to 20 rows) whole; a split row's output moves by float rounding at most, as it does between batch sizes.
CPU_FORWARD_SAMPLES = 1 << 20


def pick_device(device: str = "auto") -> str:
    """``"cuda"`` when ``device`` is "auto" and a GPU is visible, else ``device`` ("auto" -> "cpu")."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TorchScriptClassifier(CardClassifier):
    """A TorchScript classifier run under `torch.inference_mode`.

    Parameters
    ----------
    path : str or Path
        The ``.pt`` file (saved with ``torch.jit.save``). Its forward takes float32 ``[n, leads, samples]``.
    card : str or Path or ModelCard or None
        The model card. Default: None (``path`` with suffix ``.json``, see `card_path_for`).
    device : str
        "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ... Default: "auto".
    batch_size : int
        Rows per forward call. Default: 256.
    """

    def __init__(
        self,
        path: str | Path,
        card: str | Path | ModelCard | None = None,
        *,
        device: str = "auto",
        batch_size: int = 256,
    ):
        import torch

        path = Path(path)
        if not path.exists():
            raise ClassifierError(f"{path}: model file not found")
        card = card if isinstance(card, ModelCard) else ModelCard.load(card or card_path_for(path))
        super().__init__(card, str(path), batch_size)
        self.device = pick_device(device)
        try:
            self.module = torch.jit.load(str(path), map_location=self.device).eval()
            for param in self.module.parameters():  # a black box: nothing here ever needs gradients
                param.requires_grad_(False)
        except Exception as exc:  # torch raises RuntimeError / ValueError of many kinds for bad files
            raise ClassifierError(
                f"{path}: not a loadable TorchScript model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None

    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
        with torch.inference_mode():
            if str(self.device) != "cpu":
                # Page-locked memory lets the copy to the GPU run asynchronously with the previous chunk's kernels.
                x = x.pin_memory().to(self.device, non_blocking=True)
                return self.module(x).float().cpu().numpy()
            # ECG only: image and video models were not measured
            rows = max(1, CPU_FORWARD_SAMPLES // max(1, int(np.prod(x.shape[1:]))))
            if self.input_shape is not None or x.shape[0] <= rows:
                return self.module(x).float().numpy()
            return torch.cat([self.module(part) for part in x.split(rows)]).float().numpy()
