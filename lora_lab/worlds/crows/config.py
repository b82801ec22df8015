"""`world=crows`: the config schema of CrowS-Pairs-format data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

from omegaconf import MISSING

from ...checks import require as _require

CROWS_SCORES = ("full", "conditional")


@dataclass
class CrowsWorldConfig:
    """Bias pairs in the CrowS-Pairs CSV format; one adapter per bias type."""

    name: str = "crows"
    path: str = MISSING  # CSV with sent_more, sent_less, stereo_antistereo, bias_type
    text_path: str = MISSING  # general text, one passage per line: held-out part for perplexity, rest is retain text
    bias_types: Optional[List[str]] = None  # None: every type in the file
    eval_fraction: float = 0.5  # share of each type's pairs held out for evaluation (pairs sharing a sentence move together; adapters never see them)
    heldout_fraction: float = 0.5  # share of the text lines held out for perplexity
    # How a sentence is scored: "full", its log-likelihood per token after a start token (bias-bench's
    # autoregressive CrowS score); "conditional", the log-likelihood of the tokens both sentences share
    # (Nangia et al.'s score over unmodified tokens, adapted to a causal LM)
    score: str = "full"
    seed: Optional[int] = None  # the splits' seed; None: the run's `seed`

    def __post_init__(self) -> None:
        p = "world"
        _require(self.score in CROWS_SCORES, f"{p}.score", f"must be one of {list(CROWS_SCORES)}", self.score)
        for name in ("path", "text_path"):
            v = os.path.expanduser(getattr(self, name))
            _require(os.path.isfile(v), f"{p}.{name}", "file does not exist", getattr(self, name))
        _require(0 < self.eval_fraction < 1, f"{p}.eval_fraction", "must be in (0, 1)", self.eval_fraction)
        _require(0 < self.heldout_fraction < 1, f"{p}.heldout_fraction", "must be in (0, 1)", self.heldout_fraction)
