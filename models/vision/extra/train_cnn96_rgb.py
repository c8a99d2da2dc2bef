"""A 144-cell TRAIN member (12 x 12 patches of 8 px): the train member cnn64_rgb's network ("cnn") on 96-px colour
digits, not the held-out cnn96_gray's cnn_strided. Usage: ``PYTHONPATH=backend python <this> <out folder>``."""

import sys
from pathlib import Path

import torch

from ecglens.classifiers import vision_zoo as vz

if __name__ == "__main__":
    torch.set_num_threads(1)
    spec = vz.VisionSpec("cnn96_rgb", "image", "cnn", 3, 96, 1.0, "unit", "train", steps=500)
    card = vz.train_member(spec, Path(sys.argv[1]), seed=0)
    print(card["metrics"], card["training"])
