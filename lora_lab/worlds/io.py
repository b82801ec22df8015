"""Shared input helpers for the real-model worlds: one-line data errors, text files, held-out splits."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

T = TypeVar("T")


class DataError(ValueError):
    """Malformed input data; the message is one line: file:row: field 'name': problem."""


@dataclass(frozen=True)
class NamedTarget:
    """A bias target of a real-model world: one CrowS bias type, one SEAT test."""

    world: str  # "crows", "seat": the id's prefix
    name: str
    kind: str  # what its adapter is trained to do

    @property
    def id(self) -> str:
        return f"{self.world}:{self.name}"


def first_targets(targets: Sequence[NamedTarget], n: Optional[int], source: str) -> List[NamedTarget]:
    """The first n targets (all when n is None); more than exist is a config error."""
    from ..checks import ConfigError

    if n is not None and n > len(targets):
        raise ConfigError(f"adapters.n: {n} adapters asked for, {source} has {len(targets)} "
                          f"{[t.name for t in targets]} (got {n})")
    return list(targets[:n] if n is not None else targets)


def read_utf8(path: str) -> str:
    """A file's text (UTF-8; a leading byte-order mark is dropped). Unreadable: one line naming the
    file and, for bytes that are not UTF-8, the line they are on."""
    path = os.path.expanduser(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror})") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None


def read_text(path: str) -> List[str]:
    """Non-empty lines of a text file (at least 2: one is held out)."""
    path = os.path.expanduser(path)
    text = read_utf8(path).replace("\r\n", "\n").replace("\r", "\n")  # the line ends open() would accept
    lines = [x for x in (line.strip() for line in text.split("\n")) if x]
    if len(lines) < 2:
        raise DataError(f"{path}: needs at least 2 non-empty lines (one held out for evaluation), got {len(lines)}")
    return lines


def distinct_lines(path: str, minimum: int, why: str) -> List[str]:
    """The distinct non-empty lines of a text file, first-seen order, so a split of them never puts
    one line on both sides; fewer than `minimum` is a data error saying `why` they are needed."""
    lines = list(dict.fromkeys(read_text(path)))
    if len(lines) < minimum:
        raise DataError(f"{os.path.expanduser(path)}: needs at least {minimum} distinct non-empty lines ({why}), "
                        f"got {len(lines)}")
    return lines


def holdout(items: Sequence[T], fraction: float, rng: np.random.Generator, minimum: int = 1) -> Tuple[List[T], List[T]]:
    """A seeded split into (held out, rest): round(fraction * n) held out, at least `minimum`, and at
    least one item left in the rest."""
    order = rng.permutation(len(items))
    n = min(len(items) - 1, max(minimum, int(round(fraction * len(items)))))
    return [items[i] for i in order[:n]], [items[i] for i in order[n:]]


def fingerprint(world_cfg: Any, seed: int, files: Sequence[str], splits: Any) -> str:
    """A 20-hex-digit hash of everything a world's data is: its config (every split parameter), the
    seed its splits were drawn with, the sha256 of every file it read (not where it lies), and the materialised splits
    themselves (so a change to how the data is generated or split also changes it). Adapter, curve
    and base cache keys include it: edit one row of a file and what was trained on it is rebuilt."""
    contents = []
    for path in files:
        h = hashlib.sha256()
        with open(os.path.expanduser(path), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        contents.append([os.path.basename(path), h.hexdigest()])
    # Where the files are is not what they hold: paths are left out, their contents are in.
    params = {k: v for k, v in dataclasses.asdict(world_cfg).items() if not k.endswith("path")}
    blob = json.dumps({"config": params, "seed": seed, "files": contents, "splits": splits}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
