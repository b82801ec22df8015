"""The CrowS-Pairs preference, its gap and its bootstrap interval against plain-loop oracles (no torch)."""

import math

import numpy as np
import pytest

from lora_lab.worlds.crows.metric import RESAMPLES, pref_gap, pref_interval, stereo_pref


def _pref_loop(d):
    """Nangia et al.'s count: a pair is stereotypical when its stereotypical sentence scores higher;
    an equal score is neutral and stays in the denominator."""
    stereo, total = 0, 0
    for x in d:
        total += 1
        if x > 0:
            stereo += 1
    return 100.0 * stereo / total


def _percentile_loop(values, q):
    v = sorted(values)
    h = (len(v) - 1) * q / 100.0
    lo = math.floor(h)
    return v[lo] + (h - lo) * (v[min(lo + 1, len(v) - 1)] - v[lo])


def test_preference_and_gap_against_a_loop():
    d = np.array([0.3, -0.1, 0.0, 0.0, 2.0, -0.5, 1e-9, -1e-9, 0.7, 0.0])
    assert stereo_pref(d) == pytest.approx(_pref_loop(d)) == 40.0  # the three ties count as not stereotypical
    assert pref_gap(d) == pytest.approx(abs(_pref_loop(d) - 50)) == 10.0
    assert pref_gap(np.array([1.0, -1.0])) == 0.0 and pref_gap(np.array([1.0, 2.0])) == 50.0


def test_bootstrap_interval_against_a_loop_with_the_same_draws():
    d = np.random.default_rng(3).normal(0.2, 1.0, 37)
    lo, hi = pref_interval(d, np.random.default_rng(11))
    idx = np.random.default_rng(11).integers(0, len(d), size=(RESAMPLES, len(d)))  # the same draws
    prefs = []
    for row in idx:
        prefs.append(_pref_loop([d[i] for i in row]))
    assert lo == pytest.approx(_percentile_loop(prefs, 2.5)) and hi == pytest.approx(_percentile_loop(prefs, 97.5))
    assert lo < stereo_pref(d) < hi


def test_bootstrap_interval_covers_a_planted_preference():
    """Pairs prefer the stereotype with probability 0.7: about 95% of intervals contain 70%."""
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(200):
        d = np.where(rng.random(120) < 0.7, 1.0, -1.0)
        lo, hi = pref_interval(d, rng)
        hits.append(lo <= 70.0 <= hi)
    assert 0.9 <= np.mean(hits) <= 0.99
