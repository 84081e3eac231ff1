"""The perturbations of the black-box methods: RISE's random masks and sliding-window positions
(docs/methods.md, "Black-box saliency")."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["RiseMasks", "sliding_windows"]


class RiseMasks:
    """``count`` RISE masks for an image of ``size`` = (H, W), fully determined by the arguments.

    Mask n: an ``grid x grid`` binary grid (each cell kept with probability ``keep``), upsampled
    bilinearly to ``(grid + 1) * ceil(H / grid)`` x ``(grid + 1) * ceil(W / grid)``, shifted by a
    random offset in ``[0, ceil(H / grid))`` x ``[0, ceil(W / grid))`` and cropped to H x W
    (Petsiuk et al., RISE, BMVC 2018). Only the binary grids and shifts are stored; :meth:`batch`
    builds masks on demand, so any batch size gives the same masks.
    """

    def __init__(self, count: int, size: tuple[int, int], *, grid: int = 8, keep: float = 0.5, seed: int = 0):
        self.count = int(count)
        self.size = (int(size[0]), int(size[1]))
        self.grid = int(grid)
        self.keep = float(keep)
        self.cell_size = (math.ceil(self.size[0] / self.grid), math.ceil(self.size[1] / self.grid))
        # One row of uniforms per mask (its cells, then its shift), drawn in order: the first k masks
        # are the same whatever ``count`` is, so a cancelled run equals a shorter run.
        uniforms = np.random.default_rng(seed).random((self.count, self.grid * self.grid + 2))
        self.cells = (uniforms[:, :-2] < self.keep).reshape(self.count, self.grid, self.grid)
        expected = self.keep * self.grid * self.grid
        if expected < 1.0 or not self.cells.any():  # masks (nearly) empty: the saliency is (nearly) all 0
            import warnings

            empty = int((~self.cells.any(axis=(1, 2))).sum())
            warnings.warn(
                f"RISE masks with keep={self.keep:g} keep {expected:.3g} of the {self.grid}x{self.grid} cells "
                f"on average; {empty} of the masks={self.count} keep no cell, and a pixel no mask shows "
                "gets saliency 0. Raise keep (or grid).", UserWarning, stacklevel=2)
        self.shifts = np.floor(uniforms[:, -2:] * np.asarray(self.cell_size)).astype(np.int64)
        self.upsampled_size = ((self.grid + 1) * self.cell_size[0], (self.grid + 1) * self.cell_size[1])

    def __len__(self) -> int:
        return self.count

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Masks ``start .. stop - 1`` as a float32 tensor (b, 1, H, W) in [0, 1]."""
        crops = self.crops(start, stop)
        out = np.empty((len(crops), 1, *self.size), dtype=np.float32)
        for k, crop in enumerate(crops):
            out[k, 0] = crop
        return torch.from_numpy(out)

    def crops(self, start: int, stop: int) -> list[np.ndarray]:
        """Masks ``start .. stop - 1`` as float32 numpy views (H, W) into one upsampled array: the
        values of :meth:`batch`, without copying them (RISE applies and sums them in numpy, one
        thread: per-mask torch kernels would wake torch's thread pool thousands of times)."""
        cells = torch.from_numpy(self.cells[start:stop].astype(np.float32))[:, None]
        # Clamped: bilinear weights can overshoot 1 by a rounding error.
        up = F.interpolate(cells, size=self.upsampled_size, mode="bilinear", align_corners=False).clamp_(0, 1)
        up = up.numpy()
        H, W = self.size
        return [up[k, 0, r : r + H, c : c + W] for k, (r, c) in enumerate(self.shifts[start:stop])]


def sliding_windows(size: tuple[int, int], window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners (row, col) of square windows covering every pixel of ``size``: a regular
    grid with ``stride``, plus a last row / column flush with the far edge when the grid misses it."""
    def starts(n):
        s = list(range(0, n - window + 1, stride))
        if s[-1] != n - window:
            s.append(n - window)
        return s

    return [(r, c) for r in starts(size[0]) for c in starts(size[1])]


# ------------------------------------------------------------------------------------------
