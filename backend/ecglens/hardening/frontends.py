"""Front ends: fixed filters put before the parent's logit network inside the hardened module (a linear-phase
FIR high-pass, `HighPassed`; a moving-average baseline removal, `BaselineRemoved`).

torch (and `ecglens.classifiers.train`, which imports it) is imported where used, so that importing the package
does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.signal import firwin

from ecglens.hardening.parent import Trainable

# The module path a saved hardened model names its front-end class by (``__torch__.ecglens.hardening.HighPassed``),
# kept as the package's so that files stay the same whichever module of the package defines the class.
EXPORT_MODULE = "ecglens.hardening"


def _baseline_removed_class() -> Any:
    """`BaselineRemoved` is defined on first use so that importing this module does not import torch."""
    import torch
    from torch.nn import functional as F

    class BaselineRemoved(torch.nn.Module):
        """``net(x - moving_average(x))``: each lead's moving average over ``width`` samples (odd; edges padded
        by repeating the end samples) is subtracted before ``net``. Input and output as ``net``'s:
        ``[n, leads, samples]`` -> ``[n, classes]``."""

        def __init__(self, net: torch.nn.Module, width: int):
            super().__init__()
            self.net = net
            self.width = int(width) | 1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            half = self.width // 2
            base = F.avg_pool1d(F.pad(x, (half, half), mode="replicate"), self.width, stride=1)
            return self.net(x - base)

    BaselineRemoved.__module__ = EXPORT_MODULE
    return BaselineRemoved


def _high_passed_class() -> Any:
    """`HighPassed` is defined on first use so that importing this module does not import torch."""
    import torch
    from torch.nn import functional as F

    class HighPassed(torch.nn.Module):
        """``net(h * x)``: each lead filtered by the fixed linear-phase FIR ``h`` (buffer ``taps``, odd length
        ``k``; zero phase: output sample i is centred on input sample i; edges reflect-padded by ``k // 2``
        samples, so a window needs more than ``k // 2`` samples). The convolution is done by FFT, the same
        linear operator as a ``conv1d`` with that kernel at a fraction of its cost for a 3-s kernel.
        Input and output as ``net``'s: ``[n, leads, samples]`` -> ``[n, classes]``."""

        def __init__(self, net: torch.nn.Module, taps: torch.Tensor):
            super().__init__()
            self.net = net
            self.register_buffer("taps", taps.detach().to(torch.float32).clone())

        @torch.jit.export
        def filtered(self, x: torch.Tensor) -> torch.Tensor:
            """The filtered leads, ``[n, leads, samples]`` -> same shape (what ``net`` sees)."""
            k = self.taps.shape[0]
            half = k // 2
            n = x.shape[-1]
            padded = F.pad(x, (half, half), mode="reflect")
            size = padded.shape[-1] + k - 1  # linear (not circular) convolution
            full = torch.fft.irfft(torch.fft.rfft(padded, n=size) * torch.fft.rfft(self.taps, n=size), n=size)
            return full[..., 2 * half : 2 * half + n].contiguous()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(self.filtered(x))

    HighPassed.__module__ = EXPORT_MODULE
    return HighPassed


def highpass_taps(cutoff_hz: float, fs: float, taps: int = 1081) -> np.ndarray:
    """Linear-phase FIR high-pass ``[taps]`` (odd; `scipy.signal.firwin`, Hamming window, unit gain at Nyquist)
    with its -6 dB point at ``cutoff_hz`` for sampling rate ``fs`` (Hz)."""
    if cutoff_hz <= 0 or cutoff_hz >= fs / 2:
        raise ValueError(f"high-pass cut-off {cutoff_hz} Hz must lie in (0, {fs / 2}) for {fs} Hz")
    return firwin(int(taps) | 1, cutoff_hz, pass_zero=False, fs=fs)


def highpass_length(card: Any, taps: int | None = None) -> int:
    """Odd FIR length for ``card``: ``taps``, or 3 s at its rate, kept below twice its window (reflect padding
    needs the window longer than half the filter)."""
    window = int(round(card.window_s * card.sampling_rate))
    n = int(taps) if taps else int(round(3.0 * card.sampling_rate))
    return max(3, min(n, 2 * window - 1)) | 1


def with_highpass(parent: Trainable, cutoff_hz: float, taps: int | None = None) -> Trainable:
    """``parent`` with a `HighPassed` front end (cut-off ``cutoff_hz``, ``taps`` samples at the card's rate;
    default `highpass_length`) before its logit network; a new scripted module.

    Raises ValueError when the card's window is not longer than half the filter."""
    import torch

    taps = highpass_length(parent.card) if taps is None else taps
    h = torch.from_numpy(highpass_taps(cutoff_hz, parent.card.sampling_rate, taps).copy())
    window = int(round(parent.card.window_s * parent.card.sampling_rate))
    if window <= h.numel() // 2:
        raise ValueError(
            f"{parent.path}: a {h.numel()}-tap high-pass needs windows of more than {h.numel() // 2} "
            f"samples; the card's window has {window}"
        )
    wrap = _high_passed_class()
    return _with_front_end(parent, lambda net: wrap(net, h))


def with_baseline_removal(parent: Trainable, seconds: float) -> Trainable:
    """``parent`` with a `BaselineRemoved` front end of ``seconds`` (at the card's rate and input scale) before
    its logit network; a new scripted module."""
    width = max(3, int(round(seconds * parent.card.sampling_rate)))
    wrap = _baseline_removed_class()
    return _with_front_end(parent, lambda net: wrap(net, width))


def _with_front_end(parent: Trainable, wrap: Callable[[Any], Any]) -> Trainable:
    """``parent`` with ``wrap(logit network)`` in place of its logit network (a `Calibrated` module keeps its
    Platt buffers outside the front end); a new scripted module."""
    import torch

    from ecglens.classifiers.train import Calibrated  # imports torch

    if parent.calibrated:
        m = parent.module
        module = Calibrated(wrap(m.net), [1.0] * int(m.a.numel()), [0.0] * int(m.b.numel()))
        with torch.no_grad():
            module.a.copy_(m.a)
            module.b.copy_(m.b)
    else:
        module = wrap(parent.module)
    return Trainable(torch.jit.script(module), parent.card, parent.path, parent.sha256, parent.calibrated)
