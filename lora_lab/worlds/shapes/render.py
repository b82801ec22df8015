"""Pixels of the shapes world: glyphs, palette, rendering and the deterministic decoder.

An image is `size` × `size` RGB in [-1, 1] (size = 8·m): a ring `m` pixels wide whose colour is the
image's *style* (none, white or grey), and inside it a 6 × 6 grid of m × m cells where the role's
glyph is drawn in the image's *colour* on black. The decoder reads role, colour and style back
from the pixels with no learned part: every cell is labelled with the palette entry it is within
`TOL` of (in every channel), and an image is *valid* when every cell has a label, the ring is one
style colour, the glyph cells are one colour, the rest of the interior is background and the glyph
is exactly one of the world's templates. Attributes are read even from an invalid image where they
can be (majority colour of the glyph cells, majority ring label, nearest template), so a damaged
image still counts towards the attribute distributions while validity measures the damage.

Palette colours sit at the corners of the RGB cube and the ring's grey at its centre: every two
entries differ by at least 1 in some channel (0.5 of the range), twice the decoding tolerance, and
no colour is near the black background (a colour close to the background soaks up noisy pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

GRID = 6  # glyph cells per side; the ring adds one cell on each side: 8 cells
TOL = 0.5  # a pixel is a palette entry when it is within this of it in every channel

# 6 × 6 glyphs, any two at Hamming distance >= 5 (tested)
GLYPHS: Dict[str, Tuple[str, ...]] = {
    "plus": ("..##..", "..##..", "######", "######", "..##..", "..##.."),
    "cross": ("#....#", ".#..#.", "..##..", "..##..", ".#..#.", "#....#"),
    "stripes": ("######", "......", "######", "......", "######", "......"),
    "bars": ("#.#.#.", "#.#.#.", "#.#.#.", "#.#.#.", "#.#.#.", "#.#.#."),
    "box": ("######", "#....#", "#....#", "#....#", "#....#", "######"),
    "wedge": ("#.....", "##....", "###...", "####..", "#####.", "######"),
    "tee": ("######", "######", "..##..", "..##..", "..##..", "..##.."),
    "ell": ("##....", "##....", "##....", "##....", "######", "######"),
}

BACKGROUND = (-1.0, -1.0, -1.0)
COLOURS: Dict[str, Tuple[float, float, float]] = {
    "red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0),
    "yellow": (1.0, 1.0, -1.0), "magenta": (1.0, -1.0, 1.0), "cyan": (-1.0, 1.0, 1.0),
}
# a style is the ring's colour; "photo" has none (background)
STYLES: Dict[str, Optional[Tuple[float, float, float]]] = {
    "photo": None, "manga": (1.0, 1.0, 1.0), "sketch": (0.0, 0.0, 0.0),
}


def glyph_masks(names: Sequence[str]) -> np.ndarray:
    """[len(names), 6, 6] bool."""
    return np.array([[[c == "#" for c in row] for row in GLYPHS[n]] for n in names], dtype=bool)


@dataclass(frozen=True)
class Decoded:
    """What the decoder read from a batch of images: per image an index into the world's roles,
    colours and styles (-1 where unreadable) and validity."""

    role: np.ndarray  # [n] int
    colour: np.ndarray  # [n] int
    style: np.ndarray  # [n] int
    valid: np.ndarray  # [n] bool


class Renderer:
    """Renders (role, colour, style) triples and decodes images, for one world's choice of glyphs,
    colours and styles (indices into the lists given)."""

    def __init__(self, glyphs: Sequence[str], colours: Sequence[str], styles: Sequence[str], size: int):
        if size % 8:
            raise ValueError(f"image size {size}: must be a multiple of 8")
        self.size, self.m = size, size // 8
        self.masks = glyph_masks(glyphs)
        self.colours = np.array([COLOURS[c] for c in colours], dtype=np.float32)
        self.rings = [STYLES[s] for s in styles]
        # palette labels: 0 background, 1..C colours, then the ring colours that are not background
        ring_entries = sorted({r for r in self.rings if r is not None})
        self.palette = np.array([BACKGROUND, *self.colours.tolist(), *ring_entries], dtype=np.float32)
        self.style_label = [0 if r is None else 1 + len(colours) + ring_entries.index(r) for r in self.rings]

    def render(self, role: Sequence[int], colour: Sequence[int], style: Sequence[int]) -> np.ndarray:
        """[n, 3, size, size] float32 images. An index of -1 (what `decode` returns for a part it
        cannot read) leaves that part background: no ring, or no glyph (role or colour -1)."""
        n = len(role)
        cells = np.empty((n, 8, 8, 3), dtype=np.float32)
        cells[:] = BACKGROUND
        for i, (r, c, s) in enumerate(zip(role, colour, style)):
            ring = self.rings[s] if s >= 0 else None
            if ring is not None:
                cells[i, 0, :], cells[i, -1, :], cells[i, :, 0], cells[i, :, -1] = ring, ring, ring, ring
            if r >= 0 and c >= 0:
                cells[i, 1:-1, 1:-1][self.masks[r]] = self.colours[c]
        img = cells.repeat(self.m, 1).repeat(self.m, 2)  # each cell m × m pixels
        return np.ascontiguousarray(img.transpose(0, 3, 1, 2))

    def labels(self, images: np.ndarray) -> np.ndarray:
        """[n, 8, 8] cell labels (palette index; -1: no entry within TOL, or a cell whose m × m
        pixels disagree)."""
        x = np.asarray(images, dtype=np.float32).transpose(0, 2, 3, 1)  # [n, H, W, 3]
        dist = np.abs(x[..., None, :] - self.palette).max(-1)  # [n, H, W, P]
        lab = np.where(dist.min(-1) < TOL, dist.argmin(-1), -1)
        n, m = len(lab), self.m
        blocks = lab.reshape(n, 8, m, 8, m).transpose(0, 1, 3, 2, 4).reshape(n, 8, 8, m * m)
        same = (blocks == blocks[..., :1]).all(-1)
        return np.where(same, blocks[..., 0], -1)

    def decode(self, images: np.ndarray) -> Decoded:
        lab = self.labels(images)
        n, C = len(lab), len(self.colours)
        ring = np.concatenate([lab[:, 0, :], lab[:, -1, :], lab[:, 1:-1, 0], lab[:, 1:-1, -1]], axis=1)  # [n, 28]
        inner = lab[:, 1:-1, 1:-1].reshape(n, -1)  # [n, 36]
        fg = (inner >= 1) & (inner <= C)
        # colour: the most common colour label among glyph cells
        counts = np.stack([(inner == 1 + c).sum(1) for c in range(C)], 1)
        colour = np.where(fg.any(1), counts.argmax(1), -1)
        # style: the most common ring label, if it is a style's
        style_of = {lab_: s for s, lab_ in enumerate(self.style_label)}
        ring_counts = np.stack([(ring == lab_).sum(1) for lab_ in self.style_label], 1)
        style = np.where(ring_counts.max(1) > 0, ring_counts.argmax(1), -1)
        # role: the nearest template (Hamming) to the glyph cells
        ham = (fg[:, None, :] != self.masks.reshape(1, len(self.masks), -1)).sum(-1)  # [n, roles]
        role = np.where(fg.any(1), ham.argmin(1), -1)
        ring_ok = (ring == ring[:, :1]).all(1) & np.isin(ring[:, 0], list(style_of))
        one_colour = (fg.sum(1) == counts.max(1)) & fg.any(1)
        rest_bg = ((inner == 0) | fg).all(1)
        exact = ham.min(1) == 0
        valid = ring_ok & one_colour & rest_bg & exact
        return Decoded(role, colour, style, valid)
