"""The cell grid over an image or a video: patches and tubes, numbered so that the agent's bisection halves space.

An image ``[C, H, W]`` is cut into patches (default: 8 × 8 px, the window of the usual occlusion baselines; at
least 4 patches and at most 16 per side, so larger on a large image and smaller on a small one; `default_patch_side`);
a video ``[T, C, H, W]`` into tubes: a group of consecutive frames (default: the whole clip) × one
patch. A cell covers every channel of its pixels.

The agent's grid is two-dimensional, rows × positions, numbered row-major (``cell = row * n_windows + window``), as
the ECG grid is leads × time windows (`ecglens.agent.grid.SegmentGrid`). Here a *row* is a frame group (one row
for an image) and the *positions* are the patches in Z-order (Morton order: row and column bits interleaved, the
row bit first), so that the two halves of any run of positions the bisection splits are the two halves of a
rectangle of patches: the top and bottom halves of the image, then the quadrants, and so on. The bisection
(`anytime.Group`) splits positions first, down to one patch (a tube over all frames), then frame groups.

The grid answers what the agent needs of any grid: ``n_leads`` (rows), ``n_windows`` (positions), ``n_cells``,
``cell_index`` (where a cell lies in the input), ``cell_mask``, ``dropout_fill`` (what removal puts in place of a
cell: `ecglens.vision.distortions.removal`), ``cell_energy`` and ``to_samples`` (a per-cell value as a map
``[H, W]`` or ``[T, H, W]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ecglens.vision.distortions import removal

PATCH_PX = 8  # the default patch side, pixels
MIN_PATCHES, MAX_PATCHES = 4, 16  # patches per side the default keeps within
TUBES_PER_VIDEO = (
    1  # the default frame groups of a video: one, a tube spans the clip (the digit moves; frames are resolved after)
)


@dataclass(frozen=True)
class PatchGrid:
    """Patches (image) or tubes (video) over one input of shape ``shape``.

    Attributes
    ----------
    shape : tuple of int
        ``(C, H, W)`` or ``(T, C, H, W)``.
    patch : tuple of int
        Patch height and width in pixels (the last row / column of patches takes the remainder).
    tube_frames : int
        Frames per tube (video); 1 for an image.
    """

    shape: tuple[int, ...]
    patch: tuple[int, int]
    tube_frames: int = 1
    positions: np.ndarray = field(init=False, repr=False, compare=False)
    _rects: list = field(init=False, repr=False, compare=False)
    _indices: list = field(init=False, repr=False, compare=False)
    _mask: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows, cols = self.patch_rows, self.patch_cols
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        r, c = r.ravel(), c.ravel()
        order = np.argsort([_morton(int(a), int(b)) for a, b in zip(r, c)], kind="stable")
        object.__setattr__(self, "positions", np.stack([r[order], c[order]], axis=1).astype(int))
        rects = [self._rect(c) for c in range(self.n_cells)]
        object.__setattr__(self, "_rects", rects)
        object.__setattr__(self, "_indices", [self._index(rect) for rect in rects])
        mask = np.zeros(self.shape, dtype=np.int64)
        for c, idx in enumerate(self._indices):
            mask[idx] = c
        mask.flags.writeable = False
        object.__setattr__(self, "_mask", mask)

    # ------------------------------------------------------------------ sizes
    @property
    def video(self) -> bool:
        return len(self.shape) == 4

    @property
    def height(self) -> int:
        return int(self.shape[-2])

    @property
    def width(self) -> int:
        return int(self.shape[-1])

    @property
    def frames(self) -> int:
        return int(self.shape[0]) if self.video else 1

    @property
    def patch_rows(self) -> int:
        return -(-self.height // self.patch[0])

    @property
    def patch_cols(self) -> int:
        return -(-self.width // self.patch[1])

    @property
    def n_leads(self) -> int:
        """Rows of the grid: frame groups (1 for an image)."""
        return -(-self.frames // self.tube_frames)

    @property
    def n_windows(self) -> int:
        """Positions per row: the patches."""
        return self.patch_rows * self.patch_cols

    @property
    def n_cells(self) -> int:
        return self.n_leads * self.n_windows

    # ------------------------------------------------------------------ where a cell lies
    def cell_rect(self, cell: int) -> tuple[int, int, int, int, int, int]:
        """``(t0, t1, y0, y1, x0, x1)``: the frames and pixels of ``cell`` (ends exclusive; t is 0..1 for an
        image)."""
        return self._rects[int(cell)]

    def cell_index(self, cell: int) -> tuple[slice, ...]:
        """The numpy index of ``cell`` in the input (every channel)."""
        return self._indices[int(cell)]

    def _rect(self, cell: int) -> tuple[int, int, int, int, int, int]:
        group, pos = divmod(int(cell), self.n_windows)
        pr, pc = self.positions[pos]
        t0 = group * self.tube_frames
        t1 = min(self.frames, t0 + self.tube_frames)
        y0, x0 = int(pr) * self.patch[0], int(pc) * self.patch[1]
        return t0, t1, y0, min(self.height, y0 + self.patch[0]), x0, min(self.width, x0 + self.patch[1])

    def _index(self, rect: tuple[int, int, int, int, int, int]) -> tuple[slice, ...]:
        t0, t1, y0, y1, x0, x1 = rect
        space = (slice(None), slice(y0, y1), slice(x0, x1))
        return (slice(t0, t1), *space) if self.video else space

    def cell_size(self, cell: int) -> int:
        """Values of the input inside ``cell``."""
        t0, t1, y0, y1, x0, x1 = self.cell_rect(cell)
        channels = self.shape[-3]
        return (t1 - t0) * channels * (y1 - y0) * (x1 - x0)

    def label(self, cell: int) -> dict[str, int]:
        """What a reader is told of ``cell``: its patch row and column (pixels), and frames for a video."""
        t0, t1, y0, y1, x0, x1 = self.cell_rect(cell)
        out = {"cell": int(cell), "y0": y0, "y1": y1, "x0": x0, "x1": x1}
        if self.video:
            out.update(t0=t0, t1=t1)
        return out

    # ------------------------------------------------------------------ what every grid offers the agent
    def feature_mask(self) -> np.ndarray:
        """int64, the input's shape: the cell number of every value (read-only)."""
        return self._mask

    def cell_mask(self, cells: Iterable[int]) -> np.ndarray:
        """bool, the input's shape: True on the values of ``cells``."""
        chosen = np.zeros(self.n_cells, dtype=bool)
        chosen[np.asarray(list(cells), dtype=int)] = True
        return chosen[self._mask]

    def cell_masks(self, groups) -> np.ndarray:
        """bool ``[len(groups), *input shape]``: the `cell_mask` of each group of cells."""
        return np.stack([self.cell_mask(g) for g in groups])

    def dropout_fill(self, x: np.ndarray) -> np.ndarray:
        """What removal puts in place of a cell: the input blurred with a sigma of one patch side."""
        return removal(x, self.patch)

    def mean_fill(self, x: np.ndarray) -> np.ndarray:
        """``x`` with every cell (per frame of a tube) replaced by its own mean colour, per channel: a removal that
        does not depend on which other cells are removed (a blur of the input brings a removed region's content
        back from its removed neighbours)."""
        x = np.asarray(x, dtype=np.float32)
        out = np.empty_like(x)
        for idx in self._indices:
            out[idx] = x[idx].mean(axis=(-2, -1), keepdims=True)
        return out

    def cell_energy(self, x: np.ndarray) -> np.ndarray:
        """float64 ``[n_cells]``: sum of squares of ``x`` (the input's shape, e.g. a distortion) in each cell."""
        x = np.asarray(x, dtype=np.float64)
        return np.bincount(self._mask.ravel(), weights=(x**2).ravel(), minlength=self.n_cells)

    def to_samples(self, cell_values: np.ndarray) -> np.ndarray:
        """Per-cell values ``[n_cells]`` as a map: float32 ``[H, W]`` (image) or ``[T, H, W]`` (video)."""
        values = np.asarray(cell_values, dtype=np.float32).ravel()
        out = np.zeros((self.frames, self.height, self.width), dtype=np.float32)
        for c in range(self.n_cells):
            t0, t1, y0, y1, x0, x1 = self.cell_rect(c)
            out[t0:t1, y0:y1, x0:x1] = values[c]
        return out if self.video else out[0]


def _morton(r: int, c: int) -> int:
    """Z-order code of patch (r, c): bits interleaved, the row's bit above the column's at every level."""
    code = 0
    for bit in range(16):
        code |= ((c >> bit) & 1) << (2 * bit)
        code |= ((r >> bit) & 1) << (2 * bit + 1)
    return code


def default_patch_side(n: int) -> int:
    """The default patch side on an image side of ``n`` px: `PATCH_PX`, grown to keep at most `MAX_PATCHES` per side
    (queries grow with the cells) and shrunk to keep at least `MIN_PATCHES` (a coarser map says little)."""
    return max(-(-n // MAX_PATCHES), min(PATCH_PX, -(-n // MIN_PATCHES)), 1)


def make_patch_grid(
    shape: Sequence[int], *, patch: int | tuple[int, int] | None = None, tube_frames: int | None = None
) -> PatchGrid:
    """The grid over an input of ``shape`` (``[C, H, W]`` or ``[T, C, H, W]``).

    Parameters
    ----------
    patch : int or (int, int) or None
        Patch side(s) in pixels. Default: None (`default_patch_side` of H and W: 8 px from 32 to 128 px).
    tube_frames : int or None
        Frames per tube of a video. Default: None (``round(T / TUBES_PER_VIDEO)``: the whole clip); ignored for an
        image.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f"expected an image [C, H, W] or a video [T, C, H, W] shape, got {list(shape)}")
    h, w = shape[-2], shape[-1]
    if patch is None:
        size = (default_patch_side(h), default_patch_side(w))
    elif isinstance(patch, int):
        size = (patch, patch)
    else:
        size = (int(patch[0]), int(patch[1]))
    if min(size) < 1:
        raise ValueError(f"patch must be at least 1 px, got {patch}")
    size = (min(size[0], h), min(size[1], w))
    frames = 1
    if len(shape) == 4:
        frames = max(1, round(shape[0] / TUBES_PER_VIDEO)) if tube_frames is None else int(tube_frames)
        if frames < 1:
            raise ValueError(f"tube_frames must be at least 1, got {tube_frames}")
        frames = min(frames, shape[0])
    return PatchGrid(shape, size, frames)
