"""`python -m lora_lab.seat [DIR] --json OUT`: the SEAT benchmark as published, on one encoder.

Reads every test in DIR (`*.jsonl`, one object per line or pretty-printed; default: the set
lora_lab ships) before anything else: malformed data is one line and exit code 2, before torch
is loaded. Then loads the encoder (default: the packaged all-MiniLM-L6-v2; `--model PATH`: any
local Hugging Face encoder directory), embeds every distinct sentence once (mean pooling over
the attention mask, as the SEAT task does) and runs each test on all its sentences (May et al.,
2019, Sec. 2; statistics: `worlds/seat/weat.py`). Prints a table and writes OUT:
    {test: {"effect_size": d, "p_value": p, "noise_floor": mean |d| over the re-partitions,
            "n": {"targ1": sentences, "targ2": ..., "attr1": ..., "attr2": ...}}}
`--permutations` (default 100000, as in the published code) bounds the permutation test: exact
when there are at most that many partitions, else that many random ones (seeded by `--seed`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from .worlds.io import DataError
from .worlds.seat.data import SETS, SeatTest, read_tests
from .worlds.seat.shipped import SHIPPED


def run_tests(tests: List[SeatTest], model, tok, permutations: int, seed: int, progress: bool = True) -> Dict[str, dict]:
    """Each test on all its sentences; every distinct sentence embedded once."""
    import numpy as np

    from .worlds.seat.task import embed
    from .worlds.seat.weat import weat

    distinct = list(dict.fromkeys(s for t in tests for k in SETS for s in t.sets[k]))
    e = dict(zip(distinct, embed(model, tok, distinct, progress=progress).cpu().double().numpy()))
    out = {}
    for t in tests:
        x, y, a, b = (np.stack([e[s] for s in t.sets[k]]) for k in SETS)
        d, p, floor = weat(x, y, a, b, permutations, seed)
        out[t.name] = {"effect_size": d, "p_value": p, "noise_floor": floor, "n": {k: len(t.sets[k]) for k in SETS}}
    return out


def table(results: Dict[str, dict]) -> str:
    width = max(len("test"), *(len(t) for t in results))
    lines = [f"{'test':<{width}}  effect size  p-value  noise floor  " + "  ".join(f"{k:>5}" for k in SETS)]
    for t, r in results.items():
        lines.append(f"{t:<{width}}  {r['effect_size']:>11.8f}  {r['p_value']:>7.5f}  {r['noise_floor']:>11.8f}  "
                     + "  ".join(f"{r['n'][k]:>5d}" for k in SETS))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lora_lab.seat", description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", default=str(SHIPPED), help="directory of *.jsonl SEAT tests (default: the shipped set)")
    ap.add_argument("--json", required=True, type=Path, help="where to write the results")
    ap.add_argument("--model", default=None, help="a local Hugging Face encoder directory (default: all-MiniLM-L6-v2)")
    ap.add_argument("--permutations", type=int, default=100000, help="permutation test size (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random re-partitions (default %(default)s)")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    args = ap.parse_args(argv)
    model_dir = os.path.expanduser(args.model) if args.model is not None else None
    for name, ok in (("--permutations: must be > 0", args.permutations > 0),
                     (f"--model: {args.model}: not a Hugging Face model directory (no config.json)",
                      model_dir is None or os.path.isfile(os.path.join(model_dir, "config.json"))),
                     (f"--json: {args.json}: is a directory", not args.json.is_dir()),
                     (f"--json: {args.json.parent}: not a directory",
                      not args.json.parent.exists() or args.json.parent.is_dir())):
        if not ok:
            print(f"lora_lab.seat: error: {name}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    try:
        tests = read_tests(args.dir)  # before torch: bad data fails in well under a second
    except DataError as e:
        print(f"lora_lab: data error: {e}", file=sys.stderr)
        return 2

    from .base import load_minilm, resolve_device

    if model_dir is None:
        model, tok, _ = load_minilm(device="auto")
    else:
        from transformers import AutoModel, AutoTokenizer

        try:
            model, tok = AutoModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
        except (OSError, ValueError) as e:  # no weights, no tokenizer, an unknown architecture
            print(f"lora_lab.seat: error: --model: {args.model}: cannot load ({str(e).splitlines()[0]})", file=sys.stderr)
            return 2
        model = model.to(resolve_device("auto")).eval()
    results = run_tests(tests, model, tok, args.permutations, args.seed, args.progress)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"{len(results)} tests, {time.perf_counter() - t0:.1f}s -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
