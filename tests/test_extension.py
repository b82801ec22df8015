"""Room to grow: a merge method and a world, each written and registered by this test at run time,
without editing any other file, run through the config checks, the stacking jobs, the results
tables, the sweep's combined table, the report and the dashboard."""

import hashlib
import json
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.core.config_store import ConfigStore
from transformers import GPT2Config, GPT2LMHeadModel

from conftest import TINY, compose_cfg
from lora_lab import catalog
from lora_lab.catalog import MergeMethodSpec, Param, WorldSpec
from lora_lab.config import ConfigError, validate
from lora_lab.results import combine
from lora_lab.run import run
from lora_lab.schema import AFTER_USE, Metric, core_metrics, read_table_schema
from lora_lab.training import LMObjective, encode_sentences
from lora_lab.worlds.crows.score import text_nll
from lora_lab.worlds.io import NamedTarget
from lora_lab.worlds.tokenizer import build_tokenizer

pytestmark = pytest.mark.slow
FAST = ["latency.warmup=1", "latency.repeats=2", "latency.settle_s=0", "logger.mode=disabled", "progress=false"]

# ----------------------------------------------------------------------------- a toy merge method

CLIP = Param("clip", 0.05, "toy_clip: the largest |entry| of the merged delta", lambda v: v > 0, "must be > 0")


def clip_merge(deltas, ids, p):
    """The sum of the deltas, each entry clipped to [-clip, clip]."""
    out = {}
    for d in deltas:
        for k, v in d.items():
            out[k] = out[k] + v if k in out else v.clone()
    return {k: v.clamp(-p.clip, p.clip) for k, v in out.items()}


class ClipAccumulator:
    def __init__(self, p):
        self.p, self.total = p, {}

    def add(self, delta, ident):
        for k, v in delta.items():
            self.total[k] = self.total[k] + v if k in self.total else v.clone()

    def result(self):
        return {k: v.clamp(-self.p.clip, self.p.clip) for k, v in self.total.items()}

    def without(self, delta, ident):
        return {k: (v - delta[k]).clamp(-self.p.clip, self.p.clip) for k, v in self.total.items()}


TOY_MERGE = MergeMethodSpec("toy_clip", ("weight", "output"), clip_merge, ClipAccumulator, (CLIP,),
                            help="the sum, clipped entry-wise")


@pytest.fixture
def toy_merge():
    with catalog.registered(TOY_MERGE):
        yield TOY_MERGE


def test_a_registered_merge_method_is_a_config_option_with_its_parameter(toy_merge):
    c = validate(compose_cfg([*TINY, "compose.merge=[sum,toy_clip]", "compose.clip=0.01"]))
    assert c.compose.clip == 0.01 and c.merges() == ["sum", "toy_clip"]
    assert c.compose.params("toy_clip", c.seed).clip == 0.01
    with pytest.raises(ConfigError, match=r"^compose\.clip: must be > 0"):
        validate(compose_cfg([*TINY, "compose.merge=[toy_clip]", "compose.clip=-1"]))
    # the prompt family composes in input space, which the method does not declare
    assert validate(compose_cfg([*TINY, "family=prompt", "compose.merge=[sum,toy_clip]"])).merges() == ["sum"]


def test_an_unregistered_method_is_refused_naming_the_valid_ones():
    with pytest.raises(ConfigError, match=r"^compose\.merge: unknown merge method, valid: \[.*'ties'.*\] \(got 'toy_clip'\)"):
        validate(compose_cfg([*TINY, "compose.merge=[toy_clip]"]))


def test_a_registered_merge_method_runs_through_the_pipeline_report_and_dashboard(toy_merge, tmp_path):
    from analysis.report import build
    from lora_lab.adapters.stage import build_adapters
    from lora_lab.base import get_base
    from lora_lab.cache import ArtifactCache
    from lora_lab.interventions import weight_edit

    cache = tmp_path / "cache"
    sweep = tmp_path / "sweep"
    outs = {}
    for i, fam in enumerate(("lora", "steer")):
        outs[fam] = run(compose_cfg([*TINY, f"family={fam}", "compose.merge=[sum,toy_clip]", "compose.clip=0.002",
                                     f"cache_dir={cache}"]), output_dir=sweep / str(i))["results"]
    df, schema = combine(sweep)  # what the multirun callback does when a sweep ends
    assert set(df["merge"]) == {"sum", "toy_clip"} and set(df.family) == {"lora", "steer"}
    clipped, summed = (df[(df.family == "lora") & (df["merge"] == m) & (df.k == 3)] for m in ("toy_clip", "sum"))
    assert not np.allclose(clipped.bias_target_gap, summed.bias_target_gap)  # the clip changes the composition
    # oracle: the composition at k = 2 is the declared merge of the first two adapters, applied to the base
    c = validate(compose_cfg([*TINY, "family=lora", "compose.merge=[sum,toy_clip]", "compose.clip=0.002",
                              f"cache_dir={cache}"]))
    task = catalog.build_task(c.world, c.seed)
    base = get_base(c, task, ArtifactCache(cache), progress=False)
    adapters = {a.id: a for a in build_adapters(c, base, task, ArtifactCache(cache), progress=False)}
    row = df[(df.family == "lora") & (df["merge"] == "toy_clip") & (df.ordering == 0) & (df.k == 2)].iloc[0]
    chosen = [adapters[a] for a in row.adapters]
    ref = task.reference(base.model, base.tokenizer)
    with weight_edit(base.model, clip_merge([a.tensors for a in chosen], [a.id for a in chosen], c.compose.params("toy_clip", 0))):
        metrics, _ = task.evaluate(base.model, base.tokenizer, ref, [a.target for a in chosen], [a.target for a in adapters.values()])
    assert metrics["bias_target_gap"] == pytest.approx(row.bias_target_gap, rel=1e-5, abs=1e-7)
    report = build(sweep)
    claims = (report / "claims.md").read_text()
    assert "H1 (lora, toy_clip)" in claims and "H1 (steer, toy_clip)" in claims
    assert "toy_clip" in (report / "dashboard.html").read_text()
    assert (report / "fig_merges_lora.png").exists()  # the family's merge methods side by side


# ----------------------------------------------------------------------------- a toy world

WORDS = "the red green blue cat dog sat ran".split()
GOAL = 0.5  # a target word is reached when P(word | "the") is at least this


@dataclass
class ToyWorldConfig:
    """A world of colour words: one adapter per word raises its probability after "the"."""

    name: str = "toy"
    words: List[str] = field(default_factory=lambda: ["red", "green", "blue"])
    seed: Optional[int] = None


class ToyWorld:
    def __init__(self, cfg, seed):
        bad = [w for w in cfg.words if w not in WORDS]
        if bad:
            raise ConfigError(f"world.words: not in the vocabulary {WORDS} (got {bad})")
        self.cfg, self.vocab = cfg, WORDS
        self.targets = [NamedTarget("toy", w, "boost") for w in cfg.words]
        self.text = ["the cat sat", "the dog ran", "the cat ran", "the dog sat"]
        self.fingerprint = hashlib.sha256(json.dumps([cfg.words, WORDS, self.text]).encode()).hexdigest()[:20]


class ToyTask:
    def __init__(self, world):
        self.world = world

    def bias_targets(self, kind, n):
        return self.world.targets[:n]

    def objective(self, target, tok, acfg, seed):
        sentences = [f"the {target.name}"] * acfg.samples + self.world.text
        return LMObjective(encode_sentences(tok, sentences), tok.pad_token_id)

    def probs(self, model, tok):
        ids = torch.tensor([[tok.bos_token_id, tok.convert_tokens_to_ids("the")]])
        with torch.no_grad():
            p = torch.softmax(model(input_ids=ids).logits[0, -1].float(), -1)
        return {w: float(p[tok.convert_tokens_to_ids(w)]) for w in self.world.cfg.words}

    def _gap(self, probs, targets):
        return {t.id: max(0.0, GOAL - probs[t.name]) for t in targets}

    def reference(self, model, tok):
        return {"nll": text_nll(model, tok, self.world.text), "probs": self.probs(model, tok)}

    def target_gap(self, model, tok, target, rewrite=None):
        return self._gap(self.probs(model, tok), [target])[target.id]

    def target_gaps(self, model, tok, targets):
        return self._gap(self.probs(model, tok), targets)

    def quality(self, model, tok, ref):
        return {"toy_nll_delta": text_nll(model, tok, self.world.text) - ref["nll"]}

    def evaluate(self, model, tok, ref, included, all_targets, rewrite=None):
        p = self.probs(model, tok)
        measured = included or all_targets
        others = [t for t in all_targets if t not in included]
        gaps = self._gap(p, included)
        return {
            "toy_nll_delta": text_nll(model, tok, self.world.text) - ref["nll"],
            "bias_target_gap": float(np.mean(list(self._gap(p, measured).values()))),
            "bias_base_gap": float(np.mean(list(self._gap(ref["probs"], measured).values()))),
            "bias_offtarget_drift": float(np.mean([abs(p[t.name] - ref["probs"][t.name]) for t in others])) if others
            else float("nan"),
            "toy_mass": float(sum(p.values())),
        }, gaps

    def general_objective(self, tok, seed):
        return None  # no general text of its own: its after-use columns are NaN

    def removal_gap(self, model, tok, included, all_targets):
        return float(np.mean(list(self._gap(self.probs(model, tok), included or all_targets).values())))

    def latency_inputs(self):
        return list(self.world.text)

    def heldout_inputs(self):
        return list(self.world.text)

    def base_report(self, model, tok):
        return {"toy_mass": float(sum(self.probs(model, tok).values()))}


TOY_METRICS = (
    Metric("toy_nll_delta", "text NLL − base (nats/token)", "nats/token", "lower", "quality", "Text quality loss",
           primary=True),
    *core_metrics("P(word) short of 0.5", "P(word) moved from base", "probability", "words", hi=GOAL, drift_hi=1.0),
    Metric("toy_mass", "P(any colour word)", "probability", "none", "diagnostic", "Colour-word mass", 0.0, 1.0),
)
TOY_WORLD = WorldSpec("toy", ToyWorldConfig, ToyWorld, ToyTask, TOY_METRICS, models=("causal_lm",), pretrained=True)


@pytest.fixture
def toy_world(tmp_path):
    cs = ConfigStore.instance()
    with catalog.registered(TOY_WORLD):
        cs.store(group="world", name="toy", node=ToyWorldConfig)  # the `world=toy` option a yaml would give
        try:
            yield _tiny_lm(tmp_path / "lm")
        finally:
            cs.repo["world"].pop("toy.yaml", None)


def _tiny_lm(d):
    tok = build_tokenizer(WORDS)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=8, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id))
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _toy(lm, *extra):
    return ["model=hf", f"model.name_or_path={lm}", "model.device=cpu", "world=toy", "adapters.steps=20",
            "adapters.samples=16", "adapters.batch_size=8", "compose.orderings=2", *FAST, *extra]


def test_a_registered_world_is_a_config_option_with_its_own_checks(toy_world):
    c = validate(compose_cfg(_toy(toy_world, "world.words=[red,blue]")))
    assert isinstance(c.world, ToyWorldConfig) and c.world.words == ["red", "blue"]
    with pytest.raises(ConfigError, match=r"^world\.words: not in the vocabulary"):
        catalog.build_world(validate(compose_cfg(_toy(toy_world, "world.words=[purple]"))).world, 0)
    with pytest.raises(ConfigError, match="world=toy needs a causal language model; model=minilm is a sentence encoder"):
        validate(compose_cfg(["model=minilm", "world=toy"]))


def test_a_registered_world_runs_through_the_pipeline_report_and_dashboard(toy_world, tmp_path):
    from analysis.report import build

    sweep = tmp_path / "sweep"
    for i, fam in enumerate(("lora", "steer", "prompt")):
        out = run(compose_cfg(_toy(toy_world, f"family={fam}", f"cache_dir={tmp_path / 'cache'}")),
                  output_dir=sweep / str(i))
        if fam == "prompt":  # the toy world has no prompts the pre-processor could rewrite
            assert "skipped" in out and not (sweep / "2" / "results.parquet").exists()
            continue
        df = out["results"]
        assert list(df.columns[12:12 + len(TOY_METRICS)]) == [m.column for m in TOY_METRICS] and "quality_fact_acc" not in df.columns
        k0, top = df[df.k == 0], df[df.k == 3]
        assert (k0.toy_nll_delta == 0).all() and (top.removal_gap == k0.bias_target_gap.iloc[0]).all()
        assert (top.bias_target_gap < k0.bias_target_gap.iloc[0]).all()  # each adapter raises its word
        rows = out["adapters"]["rows"]
        assert all(r["gap"] < r["base_gap"] for r in rows) and "toy_nll_delta" in rows[0]
    df, schema = combine(sweep)
    assert [m.column for m in schema.metrics["toy"]] == [*(m.column for m in TOY_METRICS), "activation_shift", *AFTER_USE]
    assert read_table_schema([sweep / "results.parquet"]).metric("toy_mass", "toy").label == "P(any colour word)"
    report = build(sweep)
    claims = (report / "claims.md").read_text()
    assert "H1 (lora, sum)" in claims and "toy_nll_delta" in claims  # quality is the world's declared one
    assert "declares no control metric" in claims  # the toy world has no controllability probe: not testable
    assert (report / "fig_toy_mass.png").exists() and (report / "fig_bias_target_gap.png").exists()
    page = (report / "dashboard.html").read_text()
    assert "P(word) short of 0.5" in page and "toy_mass" in page
    gaps = pd.read_parquet(sweep / "target_gaps.parquet")
    assert set(gaps.adapter) == {"toy:red", "toy:green", "toy:blue"}
