"""`ResNet1d`: the built-in classifier's network, a small 1-D residual CNN over 2-lead, 360-Hz, 10-s strips.

The only preprocessing is removing each lead's mean (the DC offset of the amplifier): amplitudes stay in mV, so
noise at a given SNR changes what the network sees as much as it would change a clinician's reading.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Two ``kernel``-wide convolutions with batch norm and a projected shortcut; ``stride`` downsamples.

    Input ``[n, c_in, t]`` -> output ``[n, c_out, ceil(t / stride)]``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 7, stride: int = 2, dropout: float = 0.1):
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.drop = nn.Dropout(dropout)
        self.short = (
            nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))
            if (stride != 1 or c_in != c_out)
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(self.drop(y)))
        return torch.relu(y + self.short(x))


class ResNet1d(nn.Module):
    """Residual 1-D CNN: stem (kernel 15, stride `stem_stride`), one `ResidualBlock` per further width (each
    halving time), then global average and max pooling and a linear layer to one logit per class.

    Parameters
    ----------
    n_leads : int
        Input leads. Default: 2.
    n_classes : int
        Outputs (logits, independent findings). Default: 4.
    widths : tuple of int
        Channels of the stem and of each residual block. Default: (16, 24, 32, 48, 64).
    stem_stride : int
        Downsampling of the stem: 4 turns 3600 samples at 360 Hz into 900 steps of 11 ms, still several per QRS
        complex. Default: 4.
    kernel : int
        Kernel width of the residual blocks in samples. Default: 7.
    dropout : float
        Dropout inside blocks and before the head. Default: 0.2.

    Input float32 ``[n, n_leads, samples]`` in mV; output ``[n, n_classes]`` logits.
    """

    def __init__(
        self,
        n_leads: int = 2,
        n_classes: int = 4,
        widths: tuple[int, ...] = (16, 24, 32, 48, 64),
        kernel: int = 7,
        dropout: float = 0.2,
        stem_stride: int = 4,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(n_leads, widths[0], 15, stride=stem_stride, padding=7, bias=False),
            nn.BatchNorm1d(widths[0]),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(a, b, kernel, 2, dropout) for a, b in zip(widths, widths[1:])])
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=2, keepdim=True)  # DC offset only: the mV scale is kept
        h = self.blocks(self.stem(x))
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.head(self.drop(pooled))
