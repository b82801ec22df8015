"""The latency probe: warm-up excluded, median reported, the pre-processor's rewriting timed."""

import time

import pytest

from conftest import TINY, compose_cfg
from lora_lab.base import get_base
from lora_lab.cache import ArtifactCache
from lora_lab.config import validate
from lora_lab.latency import fixed_batch, forward_ms, median_ms
from lora_lab.catalog import build_task


def test_median_excludes_warmup_and_the_slow_tail():
    delays = iter([0.2, 0.2] + [0.001] * 4 + [0.3])  # 2 slow warm-up calls, then a slow outlier

    def fn():
        time.sleep(next(delays))

    ms = median_ms(fn, repeats=5, warmup=2)
    assert 0.9 < ms < 20  # the median of the five timed calls: ~1 ms, not the 300 ms outlier or warm-up


def test_fixed_batch_cycles():
    assert fixed_batch(["a", "b"], 5) == ["a", "b", "a", "b", "a"]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    cfg = validate(compose_cfg(TINY))
    task = build_task(cfg.world)
    return cfg, task, get_base(cfg, task, ArtifactCache(tmp_path_factory.mktemp("cache")), progress=False)


def test_rewriting_is_inside_the_timed_region(tiny_base):
    cfg, task, base = tiny_base
    texts = fixed_batch(task.latency_inputs(), 8)
    lat = cfg.latency
    plain = forward_ms(base.handle.latency_step(texts), lat)

    def slow_rewrite(prompt):
        time.sleep(0.002)  # 8 prompts x 2 ms = 16 ms per pass
        return prompt

    assert forward_ms(base.handle.latency_step(texts, slow_rewrite), lat) >= plain + 15
    rewritten = [task.rewriter(task.bias_targets("rebalance", 3))(t) for t in texts]
    assert rewritten != texts  # the targeted neutral prompts became explicit ones


def test_settle_keeps_warming_up_for_that_long():
    calls = []

    def fn():
        calls.append(time.perf_counter())
        time.sleep(0.005)

    median_ms(fn, repeats=2, warmup=1, settle_s=0.1)
    assert len(calls) >= 2 + 0.1 / 0.006  # ~17 untimed calls fill the 0.1 s, then the 2 timed ones
