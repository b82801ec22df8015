"""Image metrics of the shapes world (numpy, torch-free): KID and attribute distributions.

KID is the kernel inception distance of Bińkowski et al. 2018 ("Demystifying MMD GANs", ICLR,
§2.3 and appendix: the unbiased estimator of the squared MMD with the cubic polynomial kernel
k(x, y) = (xᵀy / d + 1)³, d the feature dimension). Here the features are the pixels themselves
(3 · size² values in [-1, 1]), not an Inception network's: the world's images are 8 × 8 glyphs
whose every pixel is defined, and a fixed pixel feature keeps the score exact and reproducible.
The quality score (`prompt_kid`) is KID per held-out prompt, averaged over the prompts.
"""

from __future__ import annotations

import numpy as np


def kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between the rows of x [m, d] and y [n, d] (m, n >= 2), cubic polynomial kernel."""
    x, y = np.asarray(x, np.float64).reshape(len(x), -1), np.asarray(y, np.float64).reshape(len(y), -1)
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def prompt_kid(generated: np.ndarray, real: np.ndarray, owner: np.ndarray) -> float:
    """Mean over prompts of `kid` between the images generated for a prompt and its real images
    (rows of `generated` and `real` paired by `owner`, the prompt of each). Conditioning the score on
    the prompt compares each image with what its own prompt names, not with the mixture of all
    prompts' images: a model that draws the right glyph for the wrong prompt is penalised, and with
    a held-out prompt's one deterministic image the score is 0 exactly when every image is it."""
    return float(np.mean([kid(generated[owner == p], real[owner == p]) for p in np.unique(owner)]))


def histogram(values: np.ndarray, owner: np.ndarray, groups: int, bins: int, weights: np.ndarray) -> np.ndarray:
    """[groups, bins]: per group, the weighted share of each value among its readable (>= 0) entries;
    uniform for a group with none (its images all unreadable: a collapsed row, flagged by validity)."""
    out = np.zeros((groups, bins))
    ok = values >= 0
    np.add.at(out, (owner[ok], values[ok]), weights[ok])
    total = out.sum(1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / bins)
