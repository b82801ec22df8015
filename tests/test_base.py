"""The base stage end to end: pretraining, the cache around it, determinism, the report."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY, compose_cfg
from lora_lab import training
from lora_lab.base import base_key_payload
from lora_lab.cache import ArtifactCache, content_key, sha256_file
from lora_lab.config import validate
from lora_lab.run import run
from lora_lab.worlds.synthetic.world import SyntheticWorld

REPORT_KEYS = {"fit_tv", "fact_acc", "explicit_acc", "ppl", "heldout_sentences", "heldout_overlap", "train_seconds",
               "cache_hit"}


def _weights_hash(report):
    return sha256_file(Path(report["model_path"]) / "model.safetensors")


def test_report_is_written_and_second_run_hits_cache(tiny_cfg, tmp_path, cache_dir):
    r1 = run(tiny_cfg(), output_dir=tmp_path / "a")["base"]
    on_disk = json.loads((tmp_path / "a" / "base_report.json").read_text())
    assert REPORT_KEYS <= set(on_disk) and on_disk["cache_hit"] is False
    assert 0 <= on_disk["fit_tv"] <= 1 and on_disk["ppl"] > 1
    assert on_disk["heldout_sentences"] == 50 and on_disk["heldout_overlap"] == 0  # world.general_heldout=50 distinct
    r2 = run(tiny_cfg(), output_dir=tmp_path / "b")["base"]
    assert r2["cache_hit"] is True and r2["cache_key"] == r1["cache_key"]
    for k in ("fit_tv", "fact_acc", "explicit_acc", "ppl", "train_seconds"):
        assert r2[k] == r1[k]
    assert len(list((cache_dir / "base").iterdir())) == 1
    assert len(list((cache_dir / "adapter_lora").iterdir())) == 3


def test_same_seed_same_weights_other_seed_other_weights(tiny_cfg, tmp_path, monkeypatch):
    hashes = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        monkeypatch.setenv("LORA_LAB_CACHE", str(tmp_path / f"cache_{name}"))  # force a fresh build each time
        rep = run(tiny_cfg(f"seed={seed}"), output_dir=tmp_path / name)["base"]
        assert rep["cache_hit"] is False
        hashes[name] = _weights_hash(rep)
    assert hashes["a"] == hashes["b"]
    assert hashes["a"] != hashes["c"]


def _base_key(overrides):
    c = validate(compose_cfg(overrides))
    return content_key("base", base_key_payload(c, SyntheticWorld(c.world, c.seed)))


def test_key_changes_with_any_dependency():
    keys = {_base_key([*TINY, o]) for o in
            ["seed=0", "seed=1", "world.seed=1", "world.bias_strength=0.8", "model.n_head=2", "train.lr=1e-3"]}
    assert len(keys) == 6


def test_key_covers_the_pretraining_text_as_generated(monkeypatch):
    """A change to how the corpus is generated, with the config unchanged, is a new base."""
    before = _base_key(TINY)
    corpus = SyntheticWorld.pretrain_corpus
    monkeypatch.setattr(SyntheticWorld, "pretrain_corpus", lambda self: corpus(self)[:-1])
    assert _base_key(TINY) != before


def test_llama_arch_trains(tiny_cfg, tmp_path):
    rep = run(tiny_cfg("model=tiny_llama", "model.d_model=32", "model.n_layer=1"), output_dir=tmp_path)["base"]
    assert rep["ppl"] < 20  # well below the ~100-word vocabulary: it learned something


def test_load_base_by_local_path(tiny_cfg, tmp_path):
    built = run(tiny_cfg(), output_dir=tmp_path / "a")["base"]
    loaded = run(tiny_cfg(f"model.name_or_path={built['model_path']}"), output_dir=tmp_path / "b")["base"]
    for k in ("fit_tv", "fact_acc", "explicit_acc", "ppl"):
        assert loaded[k] == pytest.approx(built[k])
    with pytest.raises(ValueError, match="model.name_or_path"):  # a base trained on another world
        run(tiny_cfg(f"model.name_or_path={built['model_path']}", "world.roles=60"), output_dir=tmp_path / "c")


def test_nan_loss_stops_training_and_caches_nothing(tiny_cfg, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(training, "lm_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(training.TrainingDiverged, match="loss is nan at step 0"):
        run(tiny_cfg(), output_dir=tmp_path)
    assert not [p for p in (cache_dir / "base").iterdir()]


def test_killed_pretraining_leaves_nothing_loadable(tmp_path):
    cache = tmp_path / "cache"
    overrides = [*TINY, "train.steps=100000", f"cache_dir={cache}"]
    p = subprocess.Popen(
        [sys.executable, "-m", "lora_lab.run", f"hydra.run.dir={tmp_path / 'out'}", *overrides],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # wait until pretraining is under way
            if list(cache.glob("base/.tmp-*")):
                break
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    key = _base_key(overrides)
    assert list(cache.glob("base/.tmp-*"))
    assert ArtifactCache(cache).load("base", key) is None
    assert not (cache / "base" / key).exists()
