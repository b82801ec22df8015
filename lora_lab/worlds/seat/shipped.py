"""The SEAT test set lora_lab ships: word lists published with WEAT (Caliskan et al., 2017),
put into sentences with our own bleached templates, in the layout of the files published with
SEAT (May et al., 2019): one pretty-printed object per file (indent 2) with targ1, targ2, attr1,
attr2, each {"category", "examples"}.

Regenerate the shipped files with `python -m lora_lab.worlds.seat.shipped`; a test checks they match.
"""

from __future__ import annotations

import json
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "seat"

PLEASANT = "caress freedom health love peace cheer friend heaven loyal pleasure diamond gentle".split()
UNPLEASANT = "abuse crash filth murder sickness accident death grief poison stink assault disaster".split()
WORDS = {
    "weat1": (("Flowers", "aster clover hyacinth marigold poppy azalea crocus iris orchid rose bluebell daffodil".split()),
              ("Insects", "ant caterpillar flea locust spider bedbug centipede fly maggot tarantula bee cockroach".split()),
              ("Pleasant", PLEASANT), ("Unpleasant", UNPLEASANT)),
    "weat2": (("Instruments", "bagpipe cello guitar lute trombone banjo clarinet harmonica mandolin trumpet bassoon drum".split()),
              ("Weapons", "arrow club gun missile spear axe dagger harpoon pistol sword blade dynamite".split()),
              ("Pleasant", PLEASANT), ("Unpleasant", UNPLEASANT)),
    "weat6": (("MaleNames", "John Paul Mike Kevin Steve Greg Jeff Bill".split()),
              ("FemaleNames", "Amy Joan Lisa Sarah Diana Kate Ann Donna".split()),
              ("Career", "executive management professional corporation salary office business career".split()),
              ("Family", "home parents children family cousins marriage wedding relatives".split())),
    "weat7": (("Math", "math algebra geometry calculus equations computation numbers addition".split()),
              ("Arts", "poetry art dance literature novel symphony drama sculpture".split()),
              ("MaleTerms", "male man boy brother he him his son".split()),
              ("FemaleTerms", "female woman girl sister she her hers daughter".split())),
    "weat8": (("Science", "science technology physics chemistry Einstein NASA experiment astronomy".split()),
              ("Arts", "poetry art Shakespeare dance literature novel symphony drama".split()),
              ("MaleTerms", "brother father uncle grandfather son he his him".split()),
              ("FemaleTerms", "sister mother aunt grandmother daughter she hers her".split())),
}
TEMPLATES = ("This is {}.", "That is {}.", "There is {}.", "Here is {}.")
NAME_TEMPLATES = ("This is {}.", "That is {}.", "{} is here.", "{} is there.")
NAME_SETS = {"MaleNames", "FemaleNames"}
# Templates per word in the shipped files: 4 rather than 2 lowers each test's noise floor on the held-out
# terms with all-MiniLM-L6-v2 (mean over 5 split seeds: 0.33 -> 0.23 for 12-word sets, 0.41 -> 0.29 for 8-word sets).
PER_WORD = 4

# General sentences for quality (similarity structure) and retain text.
_SUBJECTS = "the dog|the teacher|a child|the river|my neighbour|the old car|a small bird|the city|the train|our garden".split("|")
_PREDICATES = ("is very quiet today|runs along the road|looks tired in the morning|was painted last summer|"
               "sings before sunrise|needs a lot of water|stood near the station|opened a new window|"
               "moved to the north|smells like fresh bread").split("|")


def seat_tests(per_word: int = PER_WORD):
    """Test name -> test object; each word in the first `per_word` templates of its kind."""
    out = {}
    for name, sets in WORDS.items():
        test = {}
        for key, (category, words) in zip(("targ1", "targ2", "attr1", "attr2"), sets):
            templates = NAME_TEMPLATES if category in NAME_SETS else TEMPLATES
            test[key] = {"category": category, "examples": [t.format(w) for w in words for t in templates[:per_word]]}
        out[name] = test
    return out


def general_sentences():
    return [f"{s.capitalize()} {p}." for i, s in enumerate(_SUBJECTS) for j, p in enumerate(_PREDICATES) if (i + j) % 2 == 0]


def render():
    """File name -> text, exactly as shipped."""
    files = {f"{name}.jsonl": json.dumps(test, indent=2) + "\n" for name, test in seat_tests().items()}
    files["general.txt"] = "\n".join(general_sentences()) + "\n"
    return files


if __name__ == "__main__":
    SHIPPED.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (SHIPPED / name).write_text(text)
    print(f"wrote {len(render())} files to {SHIPPED}")
