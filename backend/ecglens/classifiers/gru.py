"""`ConvGRU`: the transfer classifier, a different architecture from `ResNet1d` for issue 3's transfer study.

A short convolutional front end shortens the strip (3600 -> 113 steps of 89 ms), a bidirectional GRU reads the beats in
order, and attention-free mean + max pooling over time feeds a linear layer. Same input and preprocessing as the
built-in model (lead means removed, mV kept).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvGRU(nn.Module):
    """Conv front end (4 strided conv layers, x32 downsampling) + bidirectional GRU + pooled linear head.

    Parameters
    ----------
    n_leads : int
        Input leads. Default: 2.
    n_classes : int
        Outputs (logits). Default: 4.
    channels : int
        Front-end channels. Default: 32.
    hidden : int
        GRU hidden size per direction. Default: 32.
    dropout : float
        Dropout before the head. Default: 0.1.

    Input float32 ``[n, n_leads, samples]`` in mV; output ``[n, n_classes]`` logits.
    """

    def __init__(
        self, n_leads: int = 2, n_classes: int = 4, channels: int = 32, hidden: int = 32, dropout: float = 0.1
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = n_leads
        for kernel, stride in ((15, 4), (9, 2), (9, 2), (5, 2)):
            layers += [
                nn.Conv1d(c_in, channels, kernel, stride=stride, padding=kernel // 2, bias=False),
                nn.BatchNorm1d(channels),
                nn.ReLU(),
            ]
            c_in = channels
        self.front = nn.Sequential(*layers)
        self.gru = nn.GRU(channels, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=2, keepdim=True)  # DC offset only: the mV scale is kept
        h = self.front(x).transpose(1, 2)  # [n, steps, channels]
        out, _ = self.gru(h)
        pooled = torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=1)
        return self.head(self.drop(pooled))
