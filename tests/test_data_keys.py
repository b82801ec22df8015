"""Cache keys cover the data: a world's fingerprint changes with every file it reads and every
split parameter, adapters and curves are rebuilt when it does, and bad data stops a run before
torch is imported."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, TINY, compose_cfg
from lora_lab.config import validate
from lora_lab.catalog import build_world
from lora_lab.worlds.seat.shipped import SHIPPED

WORDS = "he she old young is a the doctor nurse pilot chef judge baker".split()


def _write_pairs(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["sent_more", "sent_less", "stereo_antistereo", "bias_type"])
        w.writeheader()
        w.writerows(rows)


def _pairs():
    jobs = "doctor nurse pilot chef judge baker".split()
    return [{"sent_more": f"{a} is a {j}", "sent_less": f"{b} is a {j}", "stereo_antistereo": "stereo", "bias_type": t}
            for t, (a, b) in {"gender": ("he", "she"), "age": ("old", "young")}.items() for j in jobs]


@pytest.fixture
def crows_dir(tmp_path):
    _write_pairs(tmp_path / "pairs.csv", _pairs())
    rng = np.random.default_rng(0)
    (tmp_path / "text.txt").write_text("\n".join(" ".join(rng.choice(WORDS, 5)) for _ in range(20)) + "\n")
    return tmp_path


def _crows(d, *extra):
    return validate(compose_cfg(["world=crows", f"world.path={d / 'pairs.csv'}", f"world.text_path={d / 'text.txt'}",
                                 "model=hf", f"model.name_or_path={d}", *extra]))


def _fp(c):
    return build_world(c.world, c.seed).fingerprint


def test_crows_fingerprint_follows_every_file_and_split_parameter(crows_dir):
    base = _fp(_crows(crows_dir))
    assert _fp(_crows(crows_dir)) == base  # an unchanged rerun: the same key
    changed = {_fp(_crows(crows_dir, o)) for o in ("world.seed=5", "seed=5", "world.eval_fraction=0.3",
                                                   "world.heldout_fraction=0.3", "world.bias_types=[gender]")}
    assert len(changed) == 5 and base not in changed
    rows = _pairs()
    rows[3]["sent_less"] = "she is the chef"  # one CSV row edited
    _write_pairs(crows_dir / "pairs.csv", rows)
    edited = _fp(_crows(crows_dir))
    assert edited != base
    with open(crows_dir / "text.txt", "a") as f:
        f.write("he is a judge\n")  # one text line added
    assert _fp(_crows(crows_dir)) not in (base, edited)


def test_seat_fingerprint_follows_every_file_and_split_parameter(tmp_path):
    for f in SHIPPED.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    seat = ["world=seat", "model=minilm", f"world.path={tmp_path}", f"world.text_path={tmp_path / 'general.txt'}"]
    base = _fp(validate(compose_cfg(seat)))
    assert base == _fp(validate(compose_cfg(["world=seat", "model=minilm"])))  # same content, same data
    changed = {_fp(validate(compose_cfg([*seat, o]))) for o in ("seed=3", "world.eval_fraction=0.3",
                                                                "world.heldout_fraction=0.3")}
    assert len(changed) == 3 and base not in changed
    test = next(tmp_path.glob("*.jsonl"))
    test.write_text(test.read_text().replace("This is", "This was"))  # one file's sentences edited
    edited = _fp(validate(compose_cfg(seat)))
    assert edited != base
    (tmp_path / "general.txt").write_text((tmp_path / "general.txt").read_text() + "A new sentence is here.\n")
    assert _fp(validate(compose_cfg(seat))) not in (base, edited)


def test_synthetic_fingerprint_follows_the_world():
    base = _fp(validate(compose_cfg(TINY)))
    changed = {_fp(validate(compose_cfg([*TINY, o]))) for o in ("seed=1", "world.seed=1", "world.general_heldout=40",
                                                                "world.bias_strength=0.8")}
    assert len(changed) == 4 and base not in changed
    assert _fp(validate(compose_cfg([*TINY, "train.lr=1e-3"]))) == base  # not the world's data


def test_adapters_and_curves_are_rebuilt_when_the_data_changes(crows_dir, tmp_path):
    """Through the real stages: an unchanged rerun hits the cache; an edited CSV row, another
    world.seed or eval_fraction, or new weights at the model's path retrains every adapter and
    recomputes every curve."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from lora_lab.adapters.stage import build_adapters
    from lora_lab.base import get_base
    from lora_lab.cache import ArtifactCache
    from lora_lab.stacking import stack
    from lora_lab.catalog import build_task
    from lora_lab.worlds.tokenizer import build_tokenizer

    tok = build_tokenizer(WORDS)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=16, n_layer=1, n_head=2)).save_pretrained(crows_dir)
    tok.save_pretrained(crows_dir)
    cache = ArtifactCache(tmp_path / "cache")
    small = ["model.device=cpu", "adapters.n=1", "adapters.steps=2", "adapters.batch_size=4", "compose.orderings=1",
             "latency.enabled=false", "progress=false"]

    def hits(*extra):
        c = _crows(crows_dir, *small, *extra)
        task = build_task(c.world, c.seed)
        base = get_base(c, task, cache, progress=False)
        adapters = build_adapters(c, base, task, cache, progress=False)
        before = len(list((cache.root / "curve").glob("*"))) if (cache.root / "curve").exists() else 0
        stack(c, base, task, adapters, task.reference(base.model, base.tokenizer), cache, progress=False)
        built_curves = len(list((cache.root / "curve").glob("*"))) - before
        return {a.meta["cache_hit"] for a in adapters}, built_curves

    assert hits() == ({False}, 1)
    assert hits() == ({True}, 0)
    assert hits("world.seed=9") == ({False}, 1)
    assert hits("world.eval_fraction=0.3") == ({False}, 1)
    rows = _pairs()
    rows[0]["sent_more"] = "he is a the doctor"
    _write_pairs(crows_dir / "pairs.csv", rows)
    assert hits() == ({False}, 1)
    torch.manual_seed(1)  # other weights under the same model.name_or_path
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=16, n_layer=1, n_head=2)).save_pretrained(crows_dir)
    assert hits() == ({False}, 1)


def test_bad_data_stops_the_run_before_torch_is_imported(crows_dir):
    """The CLI path: a malformed row is one line and exit 2, and torch was never loaded."""
    rows = _pairs()
    rows[2]["stereo_antistereo"] = "sideways"
    _write_pairs(crows_dir / "pairs.csv", rows)
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from lora_lab.run import run\n"
        "from lora_lab.worlds.io import DataError\n"
        f"with initialize_config_dir(config_dir={str(ROOT / 'conf')!r}, version_base='1.3'):\n"
        f"    cfg = compose('config', overrides=['world=crows', 'world.path={crows_dir / 'pairs.csv'}',\n"
        f"        'world.text_path={crows_dir / 'text.txt'}', 'model=hf', 'model.name_or_path={crows_dir}'])\n"
        "try:\n"
        "    run(cfg)\n"
        "except DataError as e:\n"
        "    print(e, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == f"{crows_dir / 'pairs.csv'}:4: field 'stereo_antistereo': must be one of " \
                                 "['stereo', 'antistereo'], got 'sideways' False", out.stderr
