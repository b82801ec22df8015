"""CrowS-Pairs data: disjoint splits despite duplicates, and one-line errors (reader functions, no torch)."""

import csv

import pytest

from lora_lab.config import ConfigError
from lora_lab.worlds.crows.config import CrowsWorldConfig
from lora_lab.worlds.crows.data import CrowsWorld, read_pairs
from lora_lab.worlds.io import DataError

FIELDS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        w.writerows(rows)
    return path


def _rows():
    """Per type 8 distinct pairs, with a duplicated row, two pairs sharing a sentence, and a sentence
    shared across two types."""
    rows = []
    for t, (a, b) in {"gender": ("he", "she"), "age": ("old", "young")}.items():
        rows += [(f"{a} is a {job}", f"{b} is a {job}", "stereo", t)
                 for job in "doctor nurse teacher pilot chef farmer lawyer baker".split()]
        rows.append(rows[-3])  # the same row twice
        rows.append((f"{a} is a doctor", f"they are a doctor {t}", "antistereo", t))  # shares sent_more with row 2
    rows.append(("he is a nurse", "old is a nurse", "stereo", "age"))  # shares a sentence with a gender pair
    return rows


def _world(tmp_path, rows, text, seed, **kw):
    _write(tmp_path / "pairs.csv", rows)
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    return CrowsWorld(CrowsWorldConfig(path=str(tmp_path / "pairs.csv"), text_path=str(tmp_path / "text.txt"), **kw), seed)


@pytest.mark.parametrize("seed", range(6))
def test_heldout_pairs_and_text_share_no_sentence_with_training(tmp_path, seed):
    lines = [f"line {i % 7}" for i in range(20)]  # 7 distinct lines, each repeated
    w = _world(tmp_path, _rows(), "\n".join(lines) + "\n", seed)
    ev = {s for ps in w.eval.values() for p in ps for s in (p.stereo, p.anti)}
    tr = {s for ps in w.train.values() for p in ps for s in (p.stereo, p.anti)}
    assert len(ev & tr) == 0 and ev and tr
    assert len(set(w.heldout) & set(w.retain)) == 0
    assert sorted(w.heldout + w.retain) == sorted(set(lines))  # each distinct line once, none lost
    pairs = [(p.stereo, p.anti, p.bias_type) for ps in (*w.eval.values(), *w.train.values()) for p in ps]
    assert len(pairs) == len(set(pairs)) == 19  # the duplicated rows count once


def test_a_naive_row_split_would_have_leaked(tmp_path):
    """The planted duplicates do straddle a row-level split for some seed, so the test above can fail."""
    import numpy as np

    from lora_lab.worlds.io import holdout

    rows = [r for r in _rows() if r[3] == "gender"]
    leaks = 0
    for seed in range(6):
        ev, tr = holdout(rows, 0.5, np.random.default_rng(seed))
        leaks += bool({s for r in ev for s in r[:2]} & {s for r in tr for s in r[:2]})
    assert leaks > 0


def test_sent_more_is_the_stereotypical_sentence_in_both_directions(tmp_path):
    _write(tmp_path / "p.csv", [("a x", "b x", "stereo", "t"), ("a y", "b y", "antistereo", "t")])
    p1, p2 = read_pairs(str(tmp_path / "p.csv"))
    assert (p1.stereo, p1.anti) == ("a x", "b x") and (p2.stereo, p2.anti) == ("a y", "b y")


def _one_line(e, path, needle):
    msg = str(e.value)
    assert msg.startswith(str(path)) and needle in msg and "\n" not in msg, msg


def test_header_only_csv(tmp_path):
    path = _write(tmp_path / "p.csv", [])
    with pytest.raises(DataError) as e:
        read_pairs(str(path))
    _one_line(e, path, ":1: no data rows")


def test_csv_that_is_not_utf8(tmp_path):
    path = _write(tmp_path / "p.csv", [("a x", "b x", "stereo", "t"), ("a y", "b y", "stereo", "t")])
    path.write_bytes(path.read_bytes().replace(b"b y", b"b \xe9y"))
    with pytest.raises(DataError) as e:
        read_pairs(str(path))
    _one_line(e, path, ":3: not UTF-8 text")


def test_text_file_that_is_not_utf8(tmp_path):
    _write(tmp_path / "pairs.csv", _rows())
    text = tmp_path / "text.txt"
    text.write_bytes(b"one line\nanother line\nna\xefve\n")
    with pytest.raises(DataError) as e:
        CrowsWorld(CrowsWorldConfig(path=str(tmp_path / "pairs.csv"), text_path=str(text)), 0)
    _one_line(e, text, ":3: not UTF-8 text")


def test_text_file_with_one_distinct_line(tmp_path):
    with pytest.raises(DataError) as e:
        _world(tmp_path, _rows(), "same\nsame\n\nsame\n", 0)
    _one_line(e, tmp_path / "text.txt", "needs at least 2 distinct non-empty lines")


def test_bias_type_with_one_distinct_pair(tmp_path):
    rows = [r for r in _rows() if r[3] == "gender"] + [("old x", "young x", "stereo", "age")] * 3
    with pytest.raises(DataError) as e:
        _world(tmp_path, rows, "a\nb\n", 0)
    _one_line(e, tmp_path / "pairs.csv", ":12: field 'bias_type': 'age' has 1 distinct pair")


def test_bias_type_whose_pairs_all_share_a_sentence(tmp_path):
    rows = [r for r in _rows() if r[3] == "gender"] + [("old x", f"young {i}", "stereo", "age") for i in range(3)]
    with pytest.raises(DataError) as e:
        _world(tmp_path, rows, "a\nb\n", 0)
    _one_line(e, tmp_path / "pairs.csv", ":12: field 'bias_type': 'age': its 3 distinct pairs are linked")


def test_score_must_be_full_or_conditional(tmp_path):
    _write(tmp_path / "pairs.csv", _rows())
    (tmp_path / "t.txt").write_text("a\nb\n")
    with pytest.raises(ConfigError, match=r"^world\.score: must be one of \['full', 'conditional'\] \(got 'pll'\)$"):
        CrowsWorldConfig(path=str(tmp_path / "pairs.csv"), text_path=str(tmp_path / "t.txt"), score="pll")
