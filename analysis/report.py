"""`python -m analysis.report SWEEP_DIR`: figures, the H1-H6 claims table and a dashboard.

Reads every `results.parquet` (and `target_gaps.parquet`) under SWEEP_DIR, de-duplicated, with
what the tables declare about their columns (the metrics each world declares and the modes, labels
and colours each family declares, written into each file's metadata), and writes SWEEP_DIR/report/: fig_*.pdf + fig_*.png, claims.md (with a table of SEAT tests when the run
measured them), claims.tex, dashboard.html.
The output is a deterministic function of the tables (t-based intervals: no resampling). Options:
`--alpha`, `--flat-margin`, `--gap-goal` (see `--help`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pandas as pd
from lora_lab.schema import TableSchema, read_table_schema

from .stats import Analysis, Claim, Options, analyse

KEY = ["config_hash", "merge", "ordering", "k"]


class ReportError(Exception):
    """A problem with the input, reported as one line."""


def load(sweep_dir: Path) -> Tuple[pd.DataFrame, Optional[pd.DataFrame], TableSchema]:
    """(results, target gaps or None, the merged schema the results files declare)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir}: no such directory")
    files = sorted(sweep_dir.rglob("results.parquet"))
    if not files:
        raise ReportError(f"{sweep_dir}: no results.parquet found (run a sweep first: python -m lora_lab.run +sweep=stacking)")
    try:
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        schemas = [(f, read_table_schema([f])) for f in files]
    except Exception as e:  # a truncated or foreign file
        raise ReportError(f"{sweep_dir}: cannot read results ({type(e).__name__}: {e})") from None
    schema: Optional[TableSchema] = None
    for f, s in schemas:
        if s is None:
            raise ReportError(f"{f}: written by an older lora_lab (no metric declarations in the file): rerun the sweep")
        schema = s if schema is None else schema.merged(s)
    missing = [c for c in (*KEY, "family", "space", "seed", "config") if c not in df.columns]
    if missing:
        raise ReportError(f"{sweep_dir}: results.parquet lacks columns {missing}"
                          + (" (written by an older lora_lab: rerun the sweep)" if "config" in missing else ""))
    # the sweep-level table repeats its jobs' rows
    df = df.drop_duplicates(KEY).sort_values(["family", "merge", "seed", "ordering", "k"], ignore_index=True)
    if df.empty:
        raise ReportError(f"{sweep_dir}: the results table is empty")
    gap_files = sorted(sweep_dir.rglob("target_gaps.parquet"))
    gaps = None
    if gap_files:
        gaps = pd.concat([pd.read_parquet(f) for f in gap_files], ignore_index=True)
        gaps = gaps.drop_duplicates([*KEY, "adapter"]).sort_values([*KEY, "position"], ignore_index=True)
    return df, gaps, schema


def load_frontier(sweep_dir: Path) -> Optional[pd.DataFrame]:
    """The sweep's frontier table (the combined one, else every job's), None when no job wrote one."""
    files = [sweep_dir / "frontier.parquet"] if (sweep_dir / "frontier.parquet").exists() else \
        sorted(sweep_dir.glob("*/frontier.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.3g}"


def _p(x: float) -> str:
    return "n/a" if x != x else ("< 0.001" if x < 0.001 else f"{x:.3f}")


def _md(s: str) -> str:
    return s.replace("|", "\\|")


def _ci(c: Claim) -> str:
    return "n/a" if c.ci[0] != c.ci[0] else f"[{_fmt(c.ci[0])}, {_fmt(c.ci[1])}] ({c.ci_level:.0%})"


def settings_markdown(a: Analysis) -> List[str]:
    df = a.data
    if not a.setting_fields:
        return ["All rows share one setting: nothing but the seed and each family's own fields differs between them."]
    lines = [f"Rows differ in {', '.join(f'`{f}`' for f in a.setting_fields)}: each setting is reported apart, never pooled.", "",
             "| setting | families | seeds | rows |", "|---|---|---|---|"]
    for s, g in df.groupby("setting"):
        lines.append(f"| {_md(s)} | {', '.join(sorted(g.arm.unique()))} | {g.seed.nunique()} | {len(g)} |")
    return lines


def collapse_markdown(a: Analysis) -> List[str]:
    t = a.collapsed
    total = int(t.collapsed.sum())
    if total == 0:
        return ["No row collapsed (every row's attribute probes kept at least the configured mass on the axis values)."]
    lines = [f"{total} of {int(t.rows.sum())} rows collapsed (mean probability mass on the axis values below "
             "`eval.collapse_mass`): their attribute distributions are left out of the bias claims (H3, H4, H5a) and "
             "H2's slopes stop before the first collapsed k.", "",
             "| setting | family | merge | collapsed rows | first collapsed k |", "|---|---|---|---|---|"]
    for r in t[t.collapsed > 0].itertuples(index=False):
        lines.append(f"| {_md(r.setting)} | {r.arm} | {r.merge} | {int(r.collapsed)} of {int(r.rows)} | {int(r.first_collapsed_k)} |")
    return lines


SEAT_COLUMNS = ["base_effect_size", "effect_size", "noise_floor", "p_value"]  # target_gaps.parquet, SEAT runs


def seat_markdown(a: Analysis, gaps: Optional[pd.DataFrame]) -> List[str]:
    """Per setting, family (arm), merge and SEAT test at the largest k: the base's effect size d,
    d and its p-value and noise floor there; each the mean over seeds of the seed's mean over
    orderings. Empty when the table has no SEAT statistics."""
    if gaps is None or not set(SEAT_COLUMNS) <= set(gaps.columns):
        return []
    ids = a.data.drop_duplicates("config_hash").set_index("config_hash")[["setting", "arm"]]
    g = gaps.join(ids, on="config_hash").dropna(subset=["setting", *SEAT_COLUMNS])
    if g.empty:
        return []
    keys = ["setting", "arm", "merge", "adapter"]
    last = g[g.k == g.groupby(keys).k.transform("max")]
    per_seed = last.groupby([*keys, "seed", "k"])[SEAT_COLUMNS].mean().reset_index()
    t = per_seed.groupby(keys).agg(k=("k", "first"), seeds=("seed", "nunique"), **{c: (c, "mean") for c in SEAT_COLUMNS})
    multi = bool(a.setting_fields)
    lines = ["", "## SEAT tests", "",
             "Each SEAT test's effect size d on its held-out terms, for the base and with the largest stack; the noise floor is",
             "the mean |d| over the permutation test's re-partitions (random target labels) and p is one-sided. Means over",
             "seeds of each seed's mean over orderings.", "",
             "| " + ("setting | " if multi else "") + "family | merge | test | k | base d | d | noise floor | p | seeds |",
             "|" + ("---|" if multi else "") + "---|---|---|---|---|---|---|---|---|"]
    for (setting, arm, merge, test), r in t.iterrows():
        lines.append("| " + (f"{_md(setting)} | " if multi else "") +
                     f"{arm} | {merge} | {test} | {int(r.k)} | {_fmt(r.base_effect_size)} | {_fmt(r.effect_size)} | "
                     f"{_fmt(r.noise_floor)} | {_p(r.p_value)} | {int(r.seeds)} |")
    return lines


def claims_markdown(a: Analysis, opt: Options, gaps: Optional[pd.DataFrame] = None) -> str:
    multi = bool(a.setting_fields)
    tested = sum(1 for c in a.claims if c.p == c.p)
    lines = [
        "# Claims",
        "",
        "The seed is the unit of replication: each statistic is computed per curve, averaged over the orderings of a",
        "seed (repeated measures of one draw of world, base and adapters), then tested across seeds; `n` is the number",
        "of seeds. CIs are t-based over the per-seed values; p-values are one-sided; `p (Holm)` is adjusted across the",
        f"{tested} tested claims of this report, and the verdict uses it: supported when p (Holm) < {opt.alpha:g}, not",
        "supported when the CI lies wholly on the other side of the null (for equivalence: wholly outside the margin),",
        "otherwise inconclusive.",
        "",
        "## Settings",
        "",
        *settings_markdown(a),
        "",
        "## Collapse",
        "",
        *collapse_markdown(a),
        "",
        "## Claims",
        "",
        "| id |" + (" setting |" if multi else "") + " claim | statistic | value | CI | test | p | p (Holm) | n | verdict |",
        "|---|" + ("---|" if multi else "") + "---|---|---|---|---|---|---|---|---|",
    ]
    for c in a.claims:
        verdict = c.verdict + (f" ({c.note})" if c.note else "")
        lines.append(f"| {_md(c.id)} |" + (f" {_md(c.setting)} |" if multi else "") +
                     f" {_md(c.claim)} | {_md(c.statistic)} | {_fmt(c.value)} | {_ci(c)} | {_md(c.test or 'n/a')} | "
                     f"{_p(c.p)} | {_p(c.p_adj)} | {c.n} | {_md(verdict)} |")
    pk = a.per_k
    if not pk.empty:
        lines += ["", "## H2 at each k (secondary)", "",
                  "Quality loss of the output-space family minus the weight-space family's at each k (per-seed means over "
                  "orderings, paired by seed); one-sided t-test over seeds, Holm-adjusted across this table.", "",
                  "| " + ("setting | " if multi else "") + "merge | families | k | difference | 95% CI | p | p (Holm) | seeds | before collapse |",
                  "|" + ("---|" if multi else "") + "---|---|---|---|---|---|---|---|---|"]
        for r in pk.itertuples(index=False):
            lines.append("| " + (f"{_md(r.setting)} | " if multi else "") +
                         f"{r.merge} | {r.output} - {r.weight} | {int(r.k)} | {_fmt(r.diff)} | [{_fmt(r.lo)}, {_fmt(r.hi)}] | "
                         f"{_p(r.p)} | {_p(r.p_adj)} | {int(r.n)} | {'yes' if r.in_range else 'no'} |")
    lines += seat_markdown(a, gaps)
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"),
                 ("≥", r"$\geq$"), ("≤", r"$\leq$"), ("|", r"$|$"), ("×", r"$\times$"), ("÷", r"$\div$")):
        s = s.replace(a, b)
    return s


def claims_latex(a: Analysis) -> str:
    multi = bool(a.setting_fields)
    rows = [
        f"{_tex(c.id)}" + (f" & {_tex(c.setting)}" if multi else "") +
        f" & {_tex(c.claim)} & {_fmt(c.value)} & {_tex(_ci(c))} & {_tex(_p(c.p_adj))} & {c.n} & {_tex(c.verdict)} \\\\"
        for c in a.claims
    ]
    cols = "p{2.4cm}" + ("p{2cm}" if multi else "") + "p{4.6cm}rlrrl"
    head = "Hypothesis" + (" & Setting" if multi else "") + " & Claim & Value & CI & $p$ (Holm) & Seeds & Verdict \\\\"
    return "\n".join([
        "% Generated by python -m analysis.report; needs \\usepackage{booktabs}",
        "\\begin{table}[t]", "\\centering", "\\small",
        f"\\begin{{tabular}}{{{cols}}}", "\\toprule", head, "\\midrule", *rows, "\\bottomrule",
        "\\end{tabular}",
        "\\caption{Hypotheses H1--H6, the seed as the unit of replication; $p$ Holm-adjusted across the table. "
        "Statistics, tests and notes: claims.md.}", "\\label{tab:claims}",
        "\\end{table}", "",
    ])


def build(sweep_dir: Path, out: Optional[Path] = None, opt: Optional[Options] = None) -> Path:
    from .dashboard import write_dashboard
    from .figures import all_figures

    opt = opt or Options()
    df, gaps, schema = load(sweep_dir)
    out = Path(out) if out else Path(sweep_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    a = analyse(df, schema, opt, gaps)
    (out / "claims.md").write_text(claims_markdown(a, opt, gaps))
    (out / "claims.tex").write_text(claims_latex(a))
    all_figures(a.data, schema, gaps, out)
    from .figures import samples_figure

    samples_figure(Path(sweep_dir), a.data, schema, out)
    front = load_frontier(Path(sweep_dir))
    if front is not None:
        from .figures import frontier_figure

        frontier_figure(front, a.data, schema, out)
    write_dashboard(a.data, a.claims, schema, out / "dashboard.html", title=Path(sweep_dir).resolve().name)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path, help="a sweep (or run) directory holding results.parquet files")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: SWEEP_DIR/report)")
    ap.add_argument("--alpha", type=float, default=Options.alpha, help="significance level for the Holm-adjusted p (default %(default)s)")
    ap.add_argument("--flat-margin", type=float, default=Options.flat_margin,
                    help="H6 equivalence margin: 'flat' means the latency ratio lies within 1 ± this (default %(default)s)")
    ap.add_argument("--gap-goal", type=float, default=Options.gap_goal,
                    help="H5a: the pre-processor's target gap, in the world's gap unit, must be below this "
                         "(default %(default)s)")
    args = ap.parse_args(argv)
    for name, v, ok in (("--alpha", args.alpha, 0 < args.alpha < 0.5), ("--flat-margin", args.flat_margin, 0 < args.flat_margin < 1),
                        ("--gap-goal", args.gap_goal, args.gap_goal > 0)):  # a gap in the world's own unit
        if not ok:
            print(f"analysis.report: error: {name}: out of range (got {v})", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    try:
        out = build(args.sweep_dir, args.out, Options(args.alpha, args.flat_margin, args.gap_goal))
    except ReportError as e:
        print(f"analysis.report: error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {out} in {time.perf_counter() - t0:.1f}s:")
    for name in ("claims.md", "claims.tex", "dashboard.html"):
        print(f"  {out / name}")
    print(f"  {len(list(out.glob('fig_*.pdf')))} figures: {out}/fig_*.pdf (+ .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
