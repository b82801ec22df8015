"""Sample grids of an image world: the images a composition generates, as PNG files people can look at.

A world whose task has `samples(model, tok, rule=None)` ([rows, columns, 3, H, W] images in [-1, 1]:
one row per role, its neutral prompt, fixed noise) gets one grid per row of the first ordering of
each curve, written beside the curve in the cache (`samples_k<k>.png`) and copied into the run's
`samples/` directory (`schema.sample_file`); the report puts the k = 0, 1 and
largest-k grids of every family side by side (`fig_samples`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCALE = 4  # screen pixels per image pixel


def tile(images: np.ndarray, scale: int = SCALE, gap: int = 2) -> np.ndarray:
    """[rows, cols, 3, H, W] in [-1, 1] -> one uint8 RGB image, each image `scale` × larger (nearest
    neighbour: the pixels stay visible), `gap` grey pixels between images."""
    rows, cols, _, h, w = images.shape
    cell_h, cell_w = h * scale, w * scale
    out = np.full((rows * (cell_h + gap) + gap, cols * (cell_w + gap) + gap, 3), 128, dtype=np.uint8)
    pix = np.clip((images + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 1, 3, 4, 2)
    pix = pix.repeat(scale, 2).repeat(scale, 3)
    for r in range(rows):
        for c in range(cols):
            y, x = gap + r * (cell_h + gap), gap + c * (cell_w + gap)
            out[y : y + cell_h, x : x + cell_w] = pix[r, c]
    return out


def write_png(path: Path, images: np.ndarray) -> None:
    import matplotlib.image

    matplotlib.image.imsave(str(path), tile(images))
