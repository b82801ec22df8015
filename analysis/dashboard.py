"""`dashboard.html`: one self-contained file (data, script and style inline; no network) with
interactive curves, a setting selector (settings are shown one at a time, never pooled), filters by
family / merge / ordering / seed, and the claims table.

Curves are computed in the page as in the figures: for each k, each seed's mean over the selected
orderings, then the mean over seeds with a t-based 95% band across seeds. Points where rows have
collapsed are drawn open. Labels, log axes and family colours come from the table's schema: the
metrics each world declares and the labels and colours each family declares, written into the
table's metadata."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import List

import pandas as pd

from scipy import stats

from lora_lab.schema import TableSchema

from .figures import K_LABEL, family_color, family_label, is_log, metric_columns, metric_label
from .stats import Claim, world_of

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lora_lab: __TITLE__</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.3em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em}
.controls{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start;margin:.6em 0}
fieldset{border:1px solid #ccc;border-radius:4px;padding:.3em .7em} legend{font-size:.85em;color:#555}
label{margin-right:.6em;white-space:nowrap} svg{background:#fff;border:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em} td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
.supported{color:#006d43;font-weight:600}.not-supported{color:#b3470b;font-weight:600}.inconclusive,.not-testable{color:#666}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:.2em .5em;border-radius:3px;display:none}
.muted{color:#666;font-size:.9em}
</style></head><body>
<h1>lora_lab: __TITLE__</h1>
<div class="muted">__SUBTITLE__</div>
<h2>Curves</h2>
<div class="controls">
 <fieldset><legend>metric</legend><select id="metric"></select></fieldset>
 <fieldset id="f-setting"><legend>setting</legend><select id="setting"></select></fieldset>
 <fieldset id="f-family"><legend>family</legend></fieldset>
 <fieldset id="f-merge"><legend>merge</legend></fieldset>
 <fieldset id="f-ordering"><legend>ordering</legend></fieldset>
 <fieldset id="f-seed"><legend>seed</legend></fieldset>
 <fieldset><legend>show</legend><label><input type="checkbox" id="show-curves" checked> each curve</label>
  <label><input type="checkbox" id="show-band" checked> 95% band over seeds</label></fieldset>
</div>
<svg id="chart" width="900" height="420" role="img" aria-label="metric vs k"></svg>
<div id="tip"></div>
<h2>Claims (H1&ndash;H6)</h2>
<div class="muted">n = seeds; p one-sided; p (Holm) adjusted across the report's claims; the verdict uses it.</div>
__CLAIMS__
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const rows = D.rows, M = D.metrics, W = 900, H = 420, P = {l: 70, r: 210, t: 20, b: 45};
const svgNS = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {
  const e = document.createElementNS(svgNS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function uniq(key) { return [...new Set(rows.map(r => r[key]))].sort((a, b) => a < b ? -1 : a > b ? 1 : 0); }
const settingSel = document.getElementById("setting");
for (const s of uniq("setting")) {
  const o = document.createElement("option"); o.value = s; o.textContent = s || "(one setting)"; settingSel.appendChild(o);
}
if (uniq("setting").length < 2) document.getElementById("f-setting").style.display = "none";
settingSel.addEventListener("change", draw);
// t quantile (0.975) for df = 1..T975.length; beyond, the normal 1.96
function t975(df) { return df < 1 ? NaN : df <= D.t975.length ? D.t975[df - 1] : 1.96; }
const filters = {};
for (const key of ["family", "merge", "ordering", "seed"]) {
  const box = document.getElementById("f-" + key);
  filters[key] = new Set(uniq(key));
  for (const v of uniq(key)) {
    const lab = document.createElement("label");
    const cb = document.createElement("input");
    cb.type = "checkbox"; cb.checked = true; cb.dataset.key = key; cb.value = String(v);
    cb.addEventListener("change", () => { cb.checked ? filters[key].add(v) : filters[key].delete(v); draw(); });
    lab.appendChild(cb); lab.appendChild(document.createTextNode(" " + v)); box.appendChild(lab);
  }
}
const sel = document.getElementById("metric");
for (const [m, lab] of Object.entries(M)) {
  const o = document.createElement("option"); o.value = m; o.textContent = lab[1] + " (" + m + ")"; sel.appendChild(o);
}
sel.addEventListener("change", draw);
document.getElementById("show-curves").addEventListener("change", draw);
document.getElementById("show-band").addEventListener("change", draw);
const tip = document.getElementById("tip");
const DASHES = ["", "7 3", "2 2", "9 3 2 3", "1 3"];
function armLabel(arm) { const i = arm.indexOf(" ["), fam = i < 0 ? arm : arm.slice(0, i);
  return (D.familyLabel[fam] || fam) + (i < 0 ? "" : arm.slice(i)); }
function color(arm) { return D.familyColor[arm.split(" [")[0]] || "#555"; }
function dash(merge) { return DASHES[Math.max(0, uniq("merge").indexOf(merge)) % DASHES.length]; }
function draw() {
  const svg = document.getElementById("chart"); svg.innerHTML = "";
  const m = sel.value, logy = D.logMetrics.includes(m), attr = D.attributeMetrics.includes(m);
  // one setting at a time; attribute metrics leave collapsed rows out, as the claims do
  const keep = rows.filter(r => r.setting === settingSel.value && r[m] !== null && !(attr && r.collapsed)
    && ["family", "merge", "ordering", "seed"].every(k => filters[k].has(r[k])));
  const collapsedAt = new Set(rows.filter(r => r.setting === settingSel.value && r.collapsed).map(r => r.family + "|" + r.merge + "|" + r.k));
  const groups = new Map();  // family|merge|seed|ordering -> rows of one curve
  for (const r of keep) {
    const g = [r.family, r.merge, r.seed, r.ordering].join("|");
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(r);
  }
  if (!keep.length) { el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, svg).textContent = "no data for this selection"; return; }
  const perSeed = new Map();  // family|merge -> k -> seed -> values over orderings
  for (const [g, rs] of groups) {
    rs.sort((a, b) => a.k - b.k);
    const [fam, merge, seed] = g.split("|"), key = fam + "|" + merge;
    if (!perSeed.has(key)) perSeed.set(key, new Map());
    const mk = perSeed.get(key);
    for (const r of rs) {
      if (!mk.has(r.k)) mk.set(r.k, new Map());
      const bySeed = mk.get(r.k); if (!bySeed.has(seed)) bySeed.set(seed, []); bySeed.get(seed).push(r[m]);
    }
  }
  const mean = a => a.reduce((s, u) => s + u, 0) / a.length;
  const curves = new Map();  // family|merge -> [[k, mean over seeds, lo, hi, seeds]]
  for (const [key, mk] of perSeed) {
    curves.set(key, [...mk.entries()].sort((a, b) => a[0] - b[0]).map(([k, bySeed]) => {
      // ratios (log axis) are averaged on the log scale: geometric means, as in the figures
      const v = [...bySeed.values()].map(a => logy ? mean(a.map(Math.log)) : mean(a)), n = v.length, mu = mean(v);
      const sd = n > 1 ? Math.sqrt(v.reduce((s, u) => s + (u - mu) ** 2, 0) / (n - 1)) : 0;
      const h = n > 1 ? t975(n - 1) * sd / Math.sqrt(n) : 0;
      const back = u => logy ? Math.exp(u) : u;
      return [k, back(mu), back(mu - h), back(mu + h), n];
    }));
  }
  const showCurves = document.getElementById("show-curves").checked, showBand = document.getElementById("show-band").checked;
  const vs = keep.map(r => r[m]);
  if (showBand) for (const pts of curves.values()) for (const p of pts) vs.push(p[2], p[3]);
  const kmax = Math.max(...keep.map(r => r.k), 1), f = v => logy ? Math.log10(Math.max(v, 1e-9)) : v;
  let lo = Math.min(...vs.map(f)), hi = Math.max(...vs.map(f));
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.05; lo -= pad; hi += pad;
  const x = k => P.l + (W - P.l - P.r) * k / kmax, y = v => H - P.b - (H - P.t - P.b) * (f(v) - lo) / (hi - lo);
  el("line", {x1: P.l, y1: H - P.b, x2: W - P.r, y2: H - P.b, stroke: "#333"}, svg);
  el("line", {x1: P.l, y1: P.t, x2: P.l, y2: H - P.b, stroke: "#333"}, svg);
  const step = Math.max(1, Math.ceil(kmax / 16));
  for (let k = 0; k <= kmax; k += step) {
    el("line", {x1: x(k), y1: H - P.b, x2: x(k), y2: H - P.b + 4, stroke: "#333"}, svg);
    el("text", {x: x(k), y: H - P.b + 16, "text-anchor": "middle", "font-size": 11}, svg).textContent = k;
  }
  for (let i = 0; i <= 5; i++) {
    const fv = lo + (hi - lo) * i / 5, v = logy ? Math.pow(10, fv) : fv, yy = y(v);
    el("line", {x1: P.l - 4, y1: yy, x2: W - P.r, y2: yy, stroke: "#eee"}, svg);
    el("text", {x: P.l - 6, y: yy + 4, "text-anchor": "end", "font-size": 11}, svg).textContent = v.toPrecision(3);
  }
  el("text", {x: (P.l + W - P.r) / 2, y: H - 8, "text-anchor": "middle", "font-size": 12}, svg).textContent = D.kLabel;
  el("text", {x: 16, y: (P.t + H - P.b) / 2, "text-anchor": "middle", "font-size": 12,
              transform: `rotate(-90 16 ${(P.t + H - P.b) / 2})`}, svg).textContent = M[m][0] + (logy ? " (log)" : "");
  if (showCurves) {
    for (const [g, rs] of groups) {
      const [fam, merge] = g.split("|");
      el("polyline", {points: rs.map(r => `${x(r.k)},${y(r[m])}`).join(" "), fill: "none", stroke: color(fam),
                      "stroke-dasharray": dash(merge), "stroke-opacity": 0.35, "stroke-width": 1, class: "curve",
                      "data-group": g}, svg);
    }
  }
  let ly = P.t + 10;
  for (const [key, pts] of curves) {
    const [fam, merge] = key.split("|"), c = color(fam);
    if (showBand && pts.some(p => p[4] > 1)) {
      const upper = pts.map(([k, , , hi]) => `${x(k)},${y(hi)}`), lower = pts.map(([k, , lo]) => `${x(k)},${y(lo)}`).reverse();
      el("polygon", {points: [...upper, ...lower].join(" "), fill: c, "fill-opacity": 0.15, stroke: "none", class: "band"}, svg);
    }
    el("polyline", {points: pts.map(([k, v]) => `${x(k)},${y(v)}`).join(" "), fill: "none", stroke: c,
                    "stroke-dasharray": dash(merge), "stroke-width": 2.5, class: "mean-curve", "data-key": key}, svg);
    for (const [k, v, lo, hi, n] of pts) {
      const open = collapsedAt.has(key + "|" + k);
      const dot = el("circle", {cx: x(k), cy: y(v), r: open ? 4 : 3, fill: open ? "#fff" : c, stroke: c,
                                class: open ? "point collapsed" : "point"}, svg);
      dot.addEventListener("mousemove", ev => { tip.style.display = "block"; tip.style.left = ev.clientX + 12 + "px";
        tip.style.top = ev.clientY + 12 + "px";
        tip.textContent = `${armLabel(fam)}, ${merge}: k=${k}, ${m}=${v.toPrecision(4)}` +
          (n > 1 ? ` [${lo.toPrecision(3)}, ${hi.toPrecision(3)}], ${n} seeds` : ", 1 seed") + (open ? " (collapsed rows here)" : ""); });
      dot.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    }
    el("line", {x1: W - P.r + 12, y1: ly - 6, x2: W - P.r + 30, y2: ly - 6, stroke: c, "stroke-width": 2.5,
                "stroke-dasharray": dash(merge)}, svg);
    el("text", {x: W - P.r + 34, y: ly - 3, "font-size": 11}, svg).textContent = `${armLabel(fam)}, ${merge}`;
    ly += 18;
  }
}
draw();
</script></body></html>
"""


def _fmt(x: float) -> str:
    return "" if x != x else f"{x:.3g}"  # NaN -> empty


def claims_html(claims: List[Claim]) -> str:
    multi = len({c.setting for c in claims}) > 1
    head = ("<tr><th>id</th>" + ("<th>setting</th>" if multi else "") + "<th>claim</th><th>statistic</th>"
            "<th>value [CI]</th><th>test</th><th>p</th><th>p (Holm)</th><th>n (seeds)</th><th>verdict</th></tr>")
    body = []
    for c in claims:
        ci = f" [{_fmt(c.ci[0])}, {_fmt(c.ci[1])}] ({c.ci_level:.0%})" if c.ci[0] == c.ci[0] else ""
        note = f'<div class="muted">{html.escape(c.note)}</div>' if c.note else ""
        cls = c.verdict.replace(" ", "-")
        body.append(
            f"<tr><td>{html.escape(c.id)}</td>" + (f"<td>{html.escape(c.setting)}</td>" if multi else "") +
            f"<td>{html.escape(c.claim)}</td><td>{html.escape(c.statistic)}</td>"
            f"<td>{_fmt(c.value)}{ci}</td><td>{html.escape(c.test)}</td><td>{_fmt(c.p)}</td><td>{_fmt(c.p_adj)}</td><td>{c.n}</td>"
            f'<td class="{cls}">{html.escape(c.verdict)}{note}</td></tr>'
        )
    return f'<table id="claims">{head}{"".join(body)}</table>'


def write_dashboard(df: pd.DataFrame, claims: List[Claim], schema: TableSchema, path: Path, title: str) -> Path:
    """`df` carries `setting` and `arm` (`stats.prepare`); a family's variants (arms) are its own
    curves. A metric is labelled as the world of the rows that measure it declares it."""
    metrics = metric_columns(df)
    d = df.assign(family=df.arm)
    cols = ["setting", "family", "merge", "ordering", "seed", "k", "collapsed", *metrics]
    data = d[cols].astype(object).where(d[cols].notna(), None).to_dict(orient="records")
    world = {m: world_of(df[df[m].notna()]) for m in metrics}
    payload = {
        "rows": data, "metrics": {m: metric_label(schema, world[m], m) for m in metrics}, "kLabel": K_LABEL,
        "logMetrics": [m for m in metrics if is_log(schema, world[m], m)],
        "familyLabel": {f: family_label(schema, f) for f in schema.families},
        "familyColor": {f: family_color(schema, f) for f in schema.families}, "attributeMetrics": schema.collapsible(),
        "t975": [round(float(stats.t.ppf(0.975, n)), 4) for n in range(1, 101)],
    }
    settings = df.setting.nunique()
    subtitle = (f"{len(df)} compositions; families {', '.join(sorted(df.arm.unique()))}; "
                f"merges {', '.join(sorted(df['merge'].unique()))}; {df.ordering.nunique()} orderings x "
                f"{df.seed.nunique()} seeds; k = 0..{int(df.k.max())}"
                + (f"; {settings} settings, shown one at a time" if settings > 1 else ""))
    page = (PAGE.replace("__TITLE__", html.escape(title)).replace("__SUBTITLE__", html.escape(subtitle))
            .replace("__CLAIMS__", claims_html(claims))
            .replace("__DATA__", json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")))
    path.write_text(page)
    return path
