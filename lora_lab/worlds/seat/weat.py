"""The WEAT statistics as SEAT applies them to sentence embeddings.

Caliskan et al. (2017), Materials and Methods (WEAT); May et al. (2019), Sec. 2 (SEAT: the same
test on sentence encodings). For a word (sentence) embedding w and attribute sets A, B,
    s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)
    effect size d = (mean_{x in X} s(x) - mean_{y in Y} s(y)) / std_{w in X u Y} s(w)   (sample std, ddof = 1)
    p = Pr_i[ s(X_i, Y_i) >= s(X, Y) ],  s(X, Y) = sum_{x in X} s(x) - sum_{y in Y} s(y)
one-sided, over the re-partitions (X_i, Y_i) of X u Y into sets of the sizes of X and Y: all of
them (exact) when there are at most `permutations`, else `permutations` drawn at random and
p = (b + 1) / (m + 1), b of the m draws at or above the observed statistic (the published code,
W4ngatang/sent-bias `weat.py`, likewise counts the observed partition as one hit when it
samples). Ties count (conservative), as in the published code.

The noise floor is what |d| is when the target labels carry no information: the mean |d| over
the same re-partitions. A measured |d| within its floor is no evidence of an association.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Tuple

import numpy as np

CHUNK = 8192  # re-partitions per vectorised block (memory: CHUNK x |X| indices)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) for each row w."""
    w, a, b = _unit(w), _unit(a), _unit(b)
    return (w @ a.T).mean(1) - (w @ b.T).mean(1)


def _partitions(total: int, n: int, permutations: int, seed: int) -> Tuple[bool, Iterator[np.ndarray]]:
    """(exact, blocks of X-side index rows, each row sorted). The first row of the first block is
    the observed partition (X = the first n items): among all partitions when exact, else
    prepended to the `permutations` random draws."""
    exact = math.comb(total, n) <= permutations

    def enumerate_all():
        combos = itertools.combinations(range(total), n)  # (0..n-1), the observed partition, comes first
        while True:
            block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, CHUNK)), dtype=np.intp)
            if not len(block):
                return
            yield block.reshape(-1, n)

    def sample():
        rng = np.random.default_rng(seed)
        left = permutations
        while left:
            m = min(CHUNK, left)
            # a uniformly random n-subset per row; sorted so one set is always summed in one order
            block = np.sort(rng.random((m, total)).argpartition(n - 1, axis=1)[:, :n], axis=1)
            yield np.vstack([np.arange(n), block]) if left == permutations else block
            left -= m

    return exact, enumerate_all() if exact else sample()


def weat(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, permutations: int = 10000,
         seed: int = 0) -> Tuple[float, float, float]:
    """(effect size d, one-sided p-value, noise floor) of targets X, Y against attributes A, B.

    One set of re-partitions gives both p and the floor. Every partition's statistic, the observed
    one included, is the sum of s over its X side computed by the same vectorised expression
    (s(X_i, Y_i) = 2 sum_{X_i} s - sum_{X u Y} s is increasing in it), so the observed partition
    ties with itself exactly."""
    s = association(np.concatenate([x, y]), a, b)
    n, total = len(x), len(x) + len(y)
    sd = s.std(ddof=1)
    whole = s.sum()
    exact, blocks = _partitions(total, n, permutations, seed)
    observed = None
    at_least = count = 0
    abs_d = 0.0
    for idx in blocks:
        sums = s[idx].sum(axis=1)
        if observed is None:
            observed = sums[0]
            if not exact:
                sums = sums[1:]  # the observed row was prepended: not one of the m draws
        at_least += int((sums >= observed).sum())
        count += len(sums)
        abs_d += float(np.abs(sums / n - (whole - sums) / (total - n)).sum()) / sd
    d = float((s[:n].mean() - s[n:].mean()) / sd)  # the effect size
    p = at_least / count if exact else (at_least + 1) / (count + 1)
    return d, p, float(abs_d / count)
