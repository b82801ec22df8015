"""The shipped worlds and families give the numbers they gave before the plugin contracts.

`tests/golden/` holds the results of a fixed small sweep (three worlds, every family, every merge
method that applies) as the code computed them before worlds, families, merge methods and metrics
became declared plugins. This test runs the same sweep now and compares every number the two tables
share, row by row; latency is not part of the sweep (a wall-clock time is not a number a seed fixes).
Regenerate only when a change is *meant* to move numbers: `python tests/test_unchanged_numbers.py --write`.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY, compose_cfg  # noqa: E402
from crows_data import crows_overrides, write_crows_files  # noqa: E402

pytestmark = pytest.mark.slow
GOLDEN = Path(__file__).parent / "golden"
KEY = ["world", "family", "merge", "ordering", "k"]
GAP_KEY = [*KEY[1:], "adapter"]
# identity that names the config or the run, not a number (and two labels the record left out)
VOLATILE = ["run_id", "config_hash", "config", "model", "space"]
# Float32 kernels differ in rounding with the thread count and the process's CPU set (a pytest-xdist
# worker keeps to one core): the same sweep moved by up to 4e-6 nats between a one-core worker and
# a plain run (a difference of two ~1.3-nat losses, 9e-5 of a 0.014 delta), so numbers are held to
# 1e-5 relative or 1e-5 absolute, far below any change that means something. threads=1 takes the
# machine's core count out of it.
ATOL = 1e-5
NO_LATENCY = ["latency.enabled=false", "logger.mode=disabled", "progress=false", "threads=1"]
# adapters_report.json's quality keys, then and now (each world's declared results column)
RENAMED = {"fact_acc": "quality_fact_acc", "ppl_ratio": "quality_ppl_ratio", "similarity_spearman": "seat_similarity_spearman"}
SEAT = ["model=minilm", "model.device=cpu", "world=seat", "adapters.n=2", "adapters.steps=12", "compose.orderings=1"]


def jobs(crows_dir):
    syn = [*TINY, *NO_LATENCY]
    return [
        ("synthetic-lora", [*syn, "family=lora", "compose.merge=[sum,mean,ties,dare,svd]"]),
        ("synthetic-steer", [*syn, "family=steer", "compose.merge=[sum,mean]"]),
        ("synthetic-prompt", [*syn, "family=prompt"]),
        ("synthetic-lora-calibrated", [*syn, "family=lora", "adapters.calibrate=true", "world.seed=3", "seed=1"]),
        ("crows-lora", crows_overrides(crows_dir, "family=lora", "compose.orderings=1", *NO_LATENCY)),
        ("crows-steer", crows_overrides(crows_dir, "family=steer", "compose.orderings=1", *NO_LATENCY)),
        ("seat-lora", [*SEAT, "family=lora", *NO_LATENCY]),
        ("seat-steer", [*SEAT, "family=steer", *NO_LATENCY]),
    ]


def sweep(tmp: Path):
    """(results, target gaps, adapters alone) of every job, each from its own empty cache."""
    from lora_lab.run import run

    crows_dir = tmp / "crows"
    crows_dir.mkdir(parents=True, exist_ok=True)
    write_crows_files(crows_dir)
    results, gaps, alone = [], [], []
    for name, overrides in jobs(crows_dir):
        out = tmp / name
        r = run(compose_cfg([*overrides, f"cache_dir={tmp / 'cache' / name}"]), output_dir=out)
        results.append(r["results"].assign(job=name))
        gaps.append(pd.read_parquet(out / "target_gaps.parquet").assign(job=name))
        alone += [{**row, "job": name} for row in r["adapters"]["rows"]]
    drop = lambda df: df.drop(columns=[c for c in df.columns if c in VOLATILE or c.startswith("latency")])  # noqa: E731
    return drop(pd.concat(results, ignore_index=True)), drop(pd.concat(gaps, ignore_index=True)), alone


def _plain(v):
    """A list cell the same whether it was read from parquet (an array) or made in memory (a list)."""
    return [str(x) for x in v] if isinstance(v, (list, tuple, np.ndarray)) else str(v)


def _compare(now: pd.DataFrame, then: pd.DataFrame, key, what: str) -> None:
    now, then = now.set_index(["job", *key]).sort_index(), then.set_index(["job", *key]).sort_index()
    assert list(now.index) == list(then.index), f"{what}: rows differ"
    common = [c for c in then.columns if c in now.columns]
    # every column the old table measured (not all-NaN padding) is still there
    lost = [c for c in then.columns if c not in now.columns and then[c].notna().any()]
    assert not lost, f"{what}: measured columns gone: {lost}"
    for c in common:
        a, b = now[c], then[c]
        if pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-5, atol=ATOL, err_msg=f"{what}.{c}")
        else:
            assert [_plain(v) for v in a] == [_plain(v) for v in b], f"{what}.{c}"


def test_fixed_sweep_gives_the_recorded_numbers(tmp_path):
    results, gaps, alone = sweep(tmp_path)
    _compare(results, pd.read_parquet(GOLDEN / "results.parquet"), KEY, "results")
    _compare(gaps, pd.read_parquet(GOLDEN / "target_gaps.parquet"), GAP_KEY, "target_gaps")
    then = json.loads((GOLDEN / "adapters.json").read_text())
    assert len(alone) == len(then)
    for a, b in zip(alone, then):
        assert (a["job"], a["adapter"]) == (b["job"], b["adapter"])
        for f in b:
            if f not in ("job", "adapter"):  # a quality number is now named by its results column
                np.testing.assert_allclose(a[RENAMED.get(f, f)], b[f], rtol=1e-5, atol=ATOL,
                                           err_msg=f"{a['job']} {a['adapter']} {f}")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import os
    import tempfile

    os.environ.setdefault("WANDB_MODE", "disabled")
    with tempfile.TemporaryDirectory() as d:
        results, gaps, alone = sweep(Path(d))
    GOLDEN.mkdir(exist_ok=True)
    results.to_parquet(GOLDEN / "results.parquet", index=False)
    gaps.to_parquet(GOLDEN / "target_gaps.parquet", index=False)
    def numbers(r):  # what a seed fixes: not wall-clock seconds, not cache hits
        return {k: v for k, v in r.items() if k in ("job", "adapter") or (
            isinstance(v, (int, float)) and not isinstance(v, bool) and k != "train_seconds")}

    (GOLDEN / "adapters.json").write_text(json.dumps([numbers(r) for r in alone], indent=1) + "\n")
    print(f"wrote {GOLDEN}: {len(results)} rows, {len(gaps)} target gaps, {len(alone)} adapters")
