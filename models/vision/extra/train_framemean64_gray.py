"""A second TRAIN video member: cnn64_rgb's network ("cnn") on each frame, its features averaged over time (TSN-style
temporal mean). Not the held-out cnn_gru (no recurrence), not c3d (no 3-D convolution): a model that reads frames one
by one. Usage: ``PYTHONPATH=backend python <this> <out folder>``."""

import sys
from pathlib import Path

import torch
from torch import nn

from ecglens.classifiers import vision_zoo as vz


class FrameMean(nn.Module):
    def __init__(self, c: int, width: int):
        super().__init__()
        self.frame = vz.CNN(c, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]
        f = self.frame.features(x.reshape(n * t, x.shape[2], x.shape[3], x.shape[4])).reshape(n, t, -1)
        return self.frame.head(f.mean(dim=1))


class Member(vz.Member):
    """`vision_zoo.Member` that also builds "frame_mean" (train_member builds ``vz.Member``)."""

    def __init__(self, spec):
        if spec.arch != "frame_mean":
            super().__init__(spec)
            return
        nn.Module.__init__(self)
        self.norm = vz.Normalise(spec.input_scale, vz.NORMS[spec.norm])
        self.net = FrameMean(spec.channels, spec.width)


if __name__ == "__main__":
    torch.set_num_threads(1)
    vz.Member = Member
    spec = vz.VisionSpec(
        "framemean64_gray", "video", "frame_mean", 1, 64, 1.0, "unit", "train", steps=400, batch=16, width=12
    )
    card = vz.train_member(spec, Path(sys.argv[1]), seed=0)
    print(card["metrics"], card["training"])
