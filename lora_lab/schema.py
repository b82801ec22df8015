"""The results schema: identity columns, and the metrics and inference modes plugins declare.

Torch-free and free of every other lora_lab module, so `analysis/` can read it. A world declares
its metric columns (`Metric`: column, label, unit, direction, role) once, in its package; a family
declares its inference modes (`Mode`) once, in its module. A results table's columns are
`IDENTITY`, the world's metrics, `collapsed`, then the latency columns of the family's modes, and
the declarations themselves travel in the parquet file's metadata (`write_table`), so the report
reads every label, unit, direction and role from the table it analyses (`read_table_schema`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

SPACES = ("weight", "output", "input")  # where a family intervenes: weights, layer outputs, the prompt
TRAINED = ("weight", "output")  # the spaces of families that are trained and composed from parameters
# What a row is: which composition of which run. `config` is the JSON of the config fields that
# determine the numbers (the report reads which settings differ between rows from it).
IDENTITY = ("run_id", "world", "model", "family", "space", "merge", "ordering", "k", "adapters", "seed", "config_hash",
            "config")
COLLAPSED = "collapsed"  # bool: the row's attribute answers collapsed (a world's `collapse` metric below eval.collapse_mass)

# A metric's role: what kind of claim it can carry.
#   quality: task quality (the primary one drives H1, H2, H5b); bias: a bias measurement;
#   control: does the model still follow explicit instructions (H4a); diversity: spread of its
#   answers (H4b); cost: inference cost (latency); diagnostic: shown, never a claim.
ROLES = ("quality", "bias", "control", "diversity", "cost", "diagnostic")
DIRECTIONS = ("higher", "lower", "none")  # which way is better; "none": neither (a diagnostic)
# The bias columns every world must declare: the stacking loop and H3 read them by name.
CORE = ("bias_target_gap", "bias_base_gap", "bias_offtarget_drift", "removal_gap")
SHIFT = "activation_shift"  # measured by the pipeline on every world's rows (`PIPELINE_METRICS`)
# Removal after use (`stacking.after_use`, `eval.after_use`): the composition applied, the model
# trained further on general text, then the composition removed. NaN where not measured.
AFTER_USE_GAP = "after_use_gap"
REMOVED_AFTER_USE_GAP = "removed_after_use_gap"
REMOVED_AFTER_USE_QUALITY = "removed_after_use_nll_delta"
AFTER_USE = (AFTER_USE_GAP, REMOVED_AFTER_USE_GAP, REMOVED_AFTER_USE_QUALITY)
KEY = b"lora_lab"  # the parquet metadata key
VERSION = 1


@dataclass(frozen=True)
class Metric:
    """One metric column, declared by the world that measures it."""

    column: str
    label: str  # axis label, with the unit in it: "fact accuracy (fraction)"
    unit: str  # "nats/token", "TV", "pp", "ms", "fraction", "×", ...
    direction: str  # "higher" / "lower" is better, or "none"
    role: str  # one of ROLES
    title: str = ""  # figure title; default: the column name in words
    lo: Optional[float] = None  # the ends its values cannot pass (bands are clipped there); None: open
    hi: Optional[float] = None
    log: bool = False  # a ratio: averaged across seeds on the log scale, drawn on a log axis
    primary: bool = False  # the metric its role's hypothesis tests: quality H1, H2, H5b; control H4a; diversity H4b
    collapsible: bool = False  # meaningless in a collapsed row (renormalised attribute answers): left out there
    figure: bool = True  # its own figure (False: a reference or an interval's end, drawn with another)
    help: str = ""  # one sentence for the README and the dashboard

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"metric {self.column}: role {self.role!r}, valid: {list(ROLES)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.column}: direction {self.direction!r}, valid: {list(DIRECTIONS)}")
        if self.primary and (self.role not in ("quality", "control", "diversity") or self.direction == "none"):
            raise ValueError(f"metric {self.column}: only a quality, control or diversity metric with a direction "
                             "can be primary")

    @property
    def loss_sign(self) -> float:
        """+1 when higher is worse, -1 when higher is better: `sign * value` is a loss."""
        return {"lower": 1.0, "higher": -1.0}.get(self.direction, 0.0)


@dataclass(frozen=True)
class Mode:
    """One inference mode of a family, timed at every k beside a paired reference.

    `expect` is what H6 tests: "flat" (no cost whatever k: equivalence), "grows" (cost rising with
    k) or "costs" (slower than the bare base at k >= 1)."""

    family: str
    name: str  # "merged", "unmerged", "hooks", "rewrite"
    column: str  # results column of the mode's latency (ms)
    reference: str  # results column of its paired reference timing (ms)
    expect: str  # "flat" / "grows" / "costs"
    claim: str  # the H6 claim, in words
    label: str = ""  # legend label; default "<family> <name>"
    by_construction: str = ""  # non-empty: why the expectation holds by how the mode is built
    flops: str = ""  # results column of the mode's forward FLOPs per input token ("": not counted)
    # results column of the prompt tokens the mode adds per input ("": it adds none, no column): the
    # mean over the latency inputs of (tokens as rewritten - tokens as typed); 0 at k = 0
    tokens: str = ""

    def __post_init__(self) -> None:
        if self.expect not in ("flat", "grows", "costs"):
            raise ValueError(f"mode {self.family} {self.name}: expect {self.expect!r}, valid: flat, grows, costs")

    def columns(self) -> Tuple[str, ...]:
        """Its results columns: latency, the paired reference, FLOPs per token when counted and
        tokens added per input when it adds any."""
        return (self.column, self.reference, *((self.flops,) if self.flops else ()), *((self.tokens,) if self.tokens else ()))

    def metrics(self) -> Tuple[Metric, ...]:
        """Its columns as metrics (role cost, lower is better): latency and reference in ms, FLOPs
        per token."""
        title = self.label or f"{self.family} {self.name}"
        out = (Metric(self.column, "latency (ms per batch)", "ms", "lower", "cost", title=f"Forward latency, {title}"),
               Metric(self.reference, "latency (ms per batch)", "ms", "lower", "cost",
                      title=f"Forward latency of its paired reference, {title}", figure=False))
        if self.flops:
            out += (Metric(self.flops, "forward FLOPs per input token", "FLOPs/token", "lower", "cost",
                           title=f"Forward FLOPs per token, {title}", lo=0.0,
                           help="matrix-product FLOPs of one forward pass (torch's FlopCounterMode) ÷ the inputs' tokens"),)
        if self.tokens:
            out += (Metric(self.tokens, "prompt tokens added per input", "tokens", "lower", "cost",
                           title=f"Prompt tokens added, {title}", lo=0.0,
                           help="mean over the latency inputs of the tokens the mode adds to each (rewritten minus "
                                "as typed); 0 at k = 0"),)
        return out


# Columns the stacking loop measures on every world, beside the world's own.
PIPELINE_METRICS = (
    Metric(SHIFT, "‖Δh‖ / ‖h‖ on held-out text", "ratio", "none", "diagnostic", "Activation shift", lo=0.0,
           help="how far the composition moves the model's final hidden states on the world's held-out text: "
                "the Frobenius norm of the change over every token ÷ the base's; families compare at equal shift "
                "(NaN for the prompt pre-processor, which leaves the model as it is)"),
    Metric(AFTER_USE_GAP, "gap after further training", "gap", "lower", "bias", "Bias gap after use, composition applied",
           lo=0.0, figure=False,
           help="the included targets' gap (k = 0: all targets) after the model, composition applied, is trained "
                "further on general text for eval.after_use.steps steps (the world's gap unit; NaN where not measured)"),
    Metric(REMOVED_AFTER_USE_GAP, "gap after use and removal", "gap", "lower", "bias",
           "Bias gap after use, composition removed", lo=0.0, figure=False,
           help="the same gap once the composition is removed from the further-trained model (merged deltas "
                "subtracted, hooks taken off); k = 0: the training alone"),
    Metric(REMOVED_AFTER_USE_QUALITY, "quality loss after use and removal (as a loss)", "nats/token", "lower",
           "quality", "Quality loss after use, composition removed", figure=False,
           help="the world's primary quality metric as a loss against the base (synthetic and CrowS-Pairs: held-out "
                "NLL minus the base's, nats/token) after the composition is removed from the further-trained model; "
                "k = 0: the training alone"),
)


def require_core(world: str, metrics: Sequence[Metric]) -> None:
    """A world's declaration names every core bias column and one primary quality metric."""
    columns = [m.column for m in metrics]
    missing = [c for c in CORE if c not in columns]
    if missing:
        raise ValueError(f"world {world}: declares no {missing}; every world measures {list(CORE)}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"world {world}: a metric column is declared twice: {columns}")
    taken = [c for c in columns if c in [m.column for m in PIPELINE_METRICS]]
    if taken:
        raise ValueError(f"world {world}: {taken} is measured by the pipeline on every world; declare another name")
    if not any(m.primary and m.role == "quality" for m in metrics):
        raise ValueError(f"world {world}: no primary quality metric (Metric(..., role='quality', primary=True))")


def columns(metrics: Sequence[Metric], modes: Sequence[Mode]) -> List[str]:
    """The column order of a results table."""
    latency = [c for mode in modes for c in (mode.column, mode.reference)]
    flops = [mode.flops for mode in modes if mode.flops]
    tokens = [mode.tokens for mode in modes if mode.tokens]
    return [*IDENTITY, *(m.column for m in metrics), *(m.column for m in PIPELINE_METRICS), COLLAPSED,
            *dict.fromkeys([*latency, *flops, *tokens])]


@dataclass
class TableSchema:
    """What a results table declares about itself: its world's metrics, its family's modes and
    labels. Several tables (a sweep) merge into one: metrics are kept per world."""

    metrics: Dict[str, List[Metric]] = field(default_factory=dict)  # world -> its metrics
    modes: List[Mode] = field(default_factory=list)
    # family -> {"label", "color", "space"}, plus "control_of" (the real family) for a control family
    families: Dict[str, Dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION,
                           "metrics": {w: [dataclasses.asdict(m) for m in ms] for w, ms in self.metrics.items()},
                           "modes": [dataclasses.asdict(m) for m in self.modes], "families": self.families},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TableSchema":
        d = json.loads(text)
        if d.get("version") != VERSION:
            raise ValueError(f"results schema version {d.get('version')!r}, this lora_lab reads {VERSION}")
        return cls({w: [Metric(**m) for m in ms] for w, ms in d["metrics"].items()}, [Mode(**m) for m in d["modes"]],
                   d["families"])

    def merged(self, other: "TableSchema") -> "TableSchema":
        metrics = dict(self.metrics)
        for w, ms in other.metrics.items():
            metrics.setdefault(w, ms)
        modes = list(self.modes) + [m for m in other.modes if m not in self.modes]
        return TableSchema(metrics, modes, {**other.families, **self.families})

    def metric(self, column: str, world: Optional[str] = None) -> Optional[Metric]:
        """A column's declaration: the given world's, else the first world's that declares it."""
        worlds = [world] if world in self.metrics else []
        for w in [*worlds, *self.metrics]:
            for m in self.metrics[w]:
                if m.column == column:
                    return m
        for mode in self.modes:
            for m in mode.metrics():
                if m.column == column:
                    return m
        return None

    def with_role(self, role: str, world: Optional[str] = None) -> List[Metric]:
        """Every declared metric of `role` (one world's, or all worlds' once per column)."""
        seen, out = set(), []
        for w, ms in self.metrics.items():
            if world is not None and w != world:
                continue
            for m in ms:
                if m.role == role and m.column not in seen:
                    seen.add(m.column)
                    out.append(m)
        return out

    def collapsible(self) -> List[str]:
        return sorted({m.column for ms in self.metrics.values() for m in ms if m.collapsible})


def write_table(df, path: Path, schema: Optional[TableSchema] = None) -> None:
    """`df` as parquet at `path`, atomically (temp file, fsync, rename), with `schema` in the file's
    metadata under `lora_lab`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if schema is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), KEY: schema.to_json().encode()})
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_table_schema(paths: Iterable[Path]) -> Optional[TableSchema]:
    """The merged schema of the tables at `paths` (None when none of them carries one)."""
    import pyarrow.parquet as pq

    out: Optional[TableSchema] = None
    for p in paths:
        meta = pq.read_schema(p).metadata or {}
        if KEY in meta:
            s = TableSchema.from_json(meta[KEY].decode())
            out = s if out is None else out.merged(s)
    return out



def core_metrics(gap_label: str, drift_label: str, unit: str, what: str, lo: float = 0.0,
                 hi: Optional[float] = None, drift_hi: Optional[float] = None, collapsible: bool = False) -> Tuple[Metric, ...]:
    """The four core bias columns in a world's own unit: `what` names its targets ("targets",
    "bias types", "tests")."""
    return (
        Metric("bias_target_gap", gap_label, unit, "lower", "bias", f"Bias gap on included {what}", lo, hi,
               collapsible=collapsible, help=f"mean gap of the included {what} (k = 0: of all {what})"),
        Metric("bias_base_gap", gap_label, unit, "lower", "bias", f"The base's gap on the same {what}", lo, hi,
               figure=False, help=f"the base model's gap on the same {what}: what the composition reduced"),
        Metric("bias_offtarget_drift", drift_label, unit, "lower", "bias", f"Drift on other {what}", lo, drift_hi,
               collapsible=collapsible, help=f"how far the {what} no included adapter covers moved from the base"),
        Metric("removal_gap", gap_label, unit, "lower", "bias", "Bias gap after removal", lo, hi,
               help="the gap on the included targets after the composition is removed again (the base's, exactly)"),
    )


def diversity_metrics() -> Tuple[Metric, ...]:
    """The two diversity columns of a world whose bias is attribute distributions (normalised
    entropy over all (role, axis) pairs, and over those no included adapter targets: H4b's)."""
    return (
        Metric("diversity_entropy", "normalised entropy", "fraction", "higher", "diversity", "Attribute diversity", 0.0,
               1.0, collapsible=True, help="mean normalised entropy of the attribute distributions"),
        Metric("diversity_offtarget", "normalised entropy, untargeted pairs", "fraction", "higher", "diversity",
               "Attribute diversity where no adapter aims", 0.0, 1.0, primary=True, collapsible=True,
               help="mean normalised entropy over the (role, axis) pairs no included adapter targets (H4b)"),
    )


# An image world's sample grids (lora_lab/samples.py): a run writes them into SAMPLES_DIR, one PNG per
# (family, seed, merge, k) of the first ordering; the report reads them back by name.
SAMPLES_DIR = "samples"
_SAMPLE = re.compile(r"^(?P<family>.+)-s(?P<seed>-?\d+)-(?P<merge>[^-]+)-k(?P<k>\d+)\.png$")


def sample_file(family: str, seed: int, merge: str, k: int) -> str:
    return f"{family}-s{seed}-{merge}-k{k}.png"


def parse_sample_file(name: str) -> Optional[Dict[str, Any]]:
    """{"family", "seed", "merge", "k"} of a sample grid's file name; None for another file."""
    m = _SAMPLE.match(name)
    return None if m is None else {"family": m["family"], "seed": int(m["seed"]), "merge": m["merge"], "k": int(m["k"])}
