"""SEAT tests (May et al., 2019) in the published JSONL format, validated, and split by term.

A `*.jsonl` file holds one or more test objects {"targ1", "targ2", "attr1", "attr2"}, each
{"category": str, "examples": [str, ...]}: one object per line, or pretty-printed objects one
after another (the layout of the files published with May et al.'s code). Extra keys are
ignored. A test is named after the file's stem when the file holds one object, else
`stem_<line where the object starts>`. Problems are one line: file:line: field 'name': problem.
A sentence repeated within a set counts once (the published code keys encodings by sentence).

The statistics are in `weat.py`. SEAT files do not name the word (term) a sentence was made
from; `terms` infers it (plurals folded into their singular, articles dropped), so that all
sentences of one word land on the same side of the adapter-training / evaluation split, in every
test that uses the word, and a sentence keeps its side across tests (`split_by_term`). An
inference from templates: forms of a word that differ by more than a plural ending can still
land on different sides.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ...checks import resolve_seed
from ..io import DataError, NamedTarget, distinct_lines, first_targets, fingerprint, holdout, read_utf8
from .shipped import SHIPPED

SETS = ("targ1", "targ2", "attr1", "attr2")
_WORD = re.compile(r"[a-z0-9']+")  # lowercase words; "person's" stays one token


@dataclass(frozen=True)
class SeatTest:
    name: str
    source: str  # file:line where the object starts, for error messages
    sets: Dict[str, Tuple[str, ...]]  # targ1/targ2/attr1/attr2 -> distinct sentences, first-seen order
    categories: Dict[str, str]


def _objects(path: Path) -> List[Tuple[int, object]]:
    """(line where it starts, value) for every JSON value in the file, in order."""
    text = read_utf8(str(path))  # not UTF-8: one line naming file and line
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return out
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:  # e.lineno counts lines of the whole text
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        out.append((text.count("\n", 0, pos) + 1, obj))
        pos = end


def _test(path: Path, line: int, obj: object, name: str) -> SeatTest:
    where = f"{path}:{line}"
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object with {list(SETS)}, got {type(obj).__name__}")
    sets, cats = {}, {}
    for key in SETS:
        part = obj.get(key)
        if not isinstance(part, dict):
            raise DataError(f"{where}: field '{key}': missing, or not an object")
        cat, ex = part.get("category"), part.get("examples")
        if not isinstance(cat, str) or not cat.strip():
            raise DataError(f"{where}: field '{key}.category': empty or not a string")
        if not isinstance(ex, list) or not all(isinstance(x, str) and x.strip() for x in ex) or len(set(ex)) < 2:
            raise DataError(f"{where}: field '{key}.examples': needs a list of at least 2 distinct non-empty strings")
        sets[key], cats[key] = tuple(dict.fromkeys(ex)), cat
    return SeatTest(name, where, sets, cats)


def read_tests(directory: str) -> List[SeatTest]:
    d = Path(os.path.expanduser(directory))
    files = sorted(d.glob("*.jsonl"))
    if not files:
        raise DataError(f"{d}: no *.jsonl SEAT tests")
    tests, names = [], {}
    for path in files:
        objects = _objects(path)
        for line, obj in objects:
            t = _test(path, line, obj, path.stem if len(objects) == 1 else f"{path.stem}_{line}")
            if t.name in names:  # x.jsonl's object at line 1 and a file x_1.jsonl
                raise DataError(f"{t.source}: test name {t.name!r} is taken by {names[t.name]}; rename a file")
            names[t.name] = t.source
            tests.append(t)
    if not tests:
        raise DataError(f"{d}: the *.jsonl files hold no SEAT test")
    return tests


def tokens(sentence: str) -> List[str]:
    return _WORD.findall(sentence.lower())


ARTICLES = frozenset({"a", "an", "the"})  # "This is an executive.": the article is not the term


def _singular(word: str, vocabulary: set) -> str:
    """The singular of an English plural when the test uses that singular too ("calculuses" ->
    "calculus", "geometries" -> "geometry", "executives" -> "executive"), else the word: the
    published SEAT files put each word in singular and plural templates."""
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(suffix) and word[: len(word) - len(suffix)] + repl in vocabulary:
            return word[: len(word) - len(suffix)] + repl
    return word


def terms(test: SeatTest) -> Dict[str, Dict[Tuple[str, ...], List[str]]]:
    """Per set, the inferred term of each sentence -> its sentences (first-seen order).

    A token that occurs in more than one of the test's four sets belongs to the templates
    ("This is", "is here"), and so do the articles; a sentence's term is the tuple of its other
    tokens, each plural folded into its singular when the test has that singular. A sentence with
    no other token is its own group (its term is the sentence)."""
    seen: Dict[str, set] = {}
    for key in SETS:
        for s in test.sets[key]:
            for tok in tokens(s):
                seen.setdefault(tok, set()).add(key)
    vocabulary = {t for t, keys in seen.items() if len(keys) == 1 and t not in ARTICLES}
    out: Dict[str, Dict[Tuple[str, ...], List[str]]] = {}
    for key in SETS:
        groups: Dict[Tuple[str, ...], List[str]] = {}
        for s in test.sets[key]:
            term = tuple(_singular(t, vocabulary) for t in tokens(s) if t in vocabulary) or (s,)
            groups.setdefault(term, []).append(s)
        out[key] = groups
    return out


def split_by_term(tests: List[SeatTest], fraction: float, rng: np.random.Generator):
    """Per test name: ({set: eval sentences}, {set: train sentences}, {set: eval terms}).

    Each set's terms are split like `io.holdout` (round(fraction * n) held out for evaluation, at
    least one on each side), with all of their sentences. A term keeps its side across tests: tests
    that share words (WEAT 1 and 2 share their attribute sets) never train one test's adapter on
    a sentence another test is evaluated on. A sentence keeps its side too, even where two tests
    infer different terms for it (their templates differ). Tests are taken in order; a set whose
    terms all have a side already keeps those sides."""
    held_out: Dict[Tuple[str, ...], bool] = {}  # term -> on the evaluation side
    side_of: Dict[str, bool] = {}  # sentence -> on the evaluation side
    ev, tr, ev_terms = {}, {}, {}
    for test in tests:
        ev[test.name], tr[test.name], ev_terms[test.name] = {}, {}, {}
        for key, groups in terms(test).items():
            where = f"{test.source}: field '{key}.examples'"
            if len(groups) < 2:
                raise DataError(f"{where}: needs sentences of at least 2 terms (one held out for evaluation), "
                                f"found {len(groups)}: {[' '.join(t) for t in groups]}")
            known = {}  # a group's side, where the term or one of its sentences already has one
            for g, sentences in groups.items():
                sides = ({held_out[g]} if g in held_out else set()) | {side_of[x] for x in sentences if x in side_of}
                if len(sides) > 1:
                    raise DataError(f"{where}: the sentences of term {' '.join(g)!r} are on both sides through other "
                                    f"tests that group them differently; another world.seed splits them differently")
                if sides:
                    known[g] = sides.pop()
            new = [g for g in groups if g not in known]
            want = min(len(groups) - 1, max(1, int(round(fraction * len(groups)))))
            k = min(len(new), max(0, want - sum(known.values())))
            for i, j in enumerate(rng.permutation(len(new))):
                known[new[j]] = i < k
            for g, side in known.items():
                held_out[g] = side
                side_of.update(dict.fromkeys(groups[g], side))
            held = [g for g in groups if held_out[g]]
            if not held or len(held) == len(groups):  # only when every term already had a side
                raise DataError(f"{where}: every term is already on the {'evaluation' if held else 'training'} side "
                                f"through other tests that share it; another world.seed splits them differently")
            ev[test.name][key] = [s for g in held for s in groups[g]]
            tr[test.name][key] = [s for g in groups if not held_out[g] for s in groups[g]]
            ev_terms[test.name][key] = [" ".join(g) for g in held]
    return ev, tr, ev_terms


class SeatWorld:
    """SEAT tests with each set's terms split into adapter-training and evaluation sides."""

    def __init__(self, cfg, seed: Optional[int] = None):
        self.cfg = cfg
        self.seed = resolve_seed(cfg.seed, seed)
        self.tests = {t.name: t for t in read_tests(cfg.path or str(SHIPPED))}
        # test name -> set -> sentences (eval, train) or held-out terms
        self.eval, self.train, self.eval_terms = split_by_term(list(self.tests.values()), cfg.eval_fraction,
                                                               np.random.default_rng(self.seed))
        lines = distinct_lines(cfg.text_path or str(SHIPPED / "general.txt"), 4,
                               "3 held out for the similarity check, 1 retained")
        # at least 3 held out: a rank correlation of pairwise similarities needs 2 pairs or more
        self.heldout, self.retain = holdout(lines, cfg.heldout_fraction, np.random.default_rng([self.seed, 1]), minimum=3)

    def targets(self, n: Optional[int] = None) -> List[NamedTarget]:
        """One target per SEAT test; adapters shrink that test's effect size."""
        return first_targets([NamedTarget("seat", t, "seat") for t in sorted(self.tests)], n, "the SEAT set (tests)")

    @cached_property
    def fingerprint(self) -> str:
        """The data's hash: every test file's and the text file's contents, the split parameters and
        the splits (io.fingerprint)."""
        files = sorted(Path(os.path.expanduser(self.cfg.path or str(SHIPPED))).glob("*.jsonl"))
        text = self.cfg.text_path or str(SHIPPED / "general.txt")
        splits = {"train": self.train, "eval": self.eval, "heldout": self.heldout, "retain": self.retain}
        return fingerprint(self.cfg, self.seed, [*map(str, files), text], splits)
