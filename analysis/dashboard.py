"""`dashboard.html`: one self-contained file (data, script and style inline; no network) with
interactive curves, filters by family / merge / ordering / seed, and the claims table."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import List

import pandas as pd

from .figures import FAMILY_COLOR, FAMILY_LABEL, K_LABEL, METRIC_LABEL, metric_columns
from .stats import Claim

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
 <fieldset id="f-family"><legend>family</legend></fieldset>
 <fieldset id="f-merge"><legend>merge</legend></fieldset>
 <fieldset id="f-ordering"><legend>ordering</legend></fieldset>
 <fieldset id="f-seed"><legend>seed</legend></fieldset>
 <fieldset><legend>show</legend><label><input type="checkbox" id="show-curves" checked> each curve</label></fieldset>
</div>
<svg id="chart" width="900" height="420" role="img" aria-label="metric vs k"></svg>
<div id="tip"></div>
<h2>Claims (H1&ndash;H6)</h2>
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
const tip = document.getElementById("tip");
const DASHES = ["", "7 3", "2 2", "9 3 2 3", "1 3"];
function color(fam) { return D.familyColor[fam] || "#555"; }
function dash(merge) { return DASHES[Math.max(0, uniq("merge").indexOf(merge)) % DASHES.length]; }
function draw() {
  const svg = document.getElementById("chart"); svg.innerHTML = "";
  const m = sel.value, logy = m === "quality_ppl_ratio";
  const keep = rows.filter(r => ["family", "merge", "ordering", "seed"].every(k => filters[k].has(r[k])) && r[m] !== null);
  const groups = new Map();
  for (const r of keep) {
    const g = [r.family, r.merge, r.seed, r.ordering].join("|");
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(r);
  }
  const ks = keep.map(r => r.k), vs = keep.map(r => r[m]);
  if (!keep.length) { el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, svg).textContent = "no data for this selection"; return; }
  const kmax = Math.max(...ks, 1), f = v => logy ? Math.log10(Math.max(v, 1e-9)) : v;
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
  const showCurves = document.getElementById("show-curves").checked;
  const means = new Map();
  for (const [g, rs] of groups) {
    rs.sort((a, b) => a.k - b.k);
    const [fam, merge] = g.split("|"), c = color(fam), key = fam + "|" + merge;
    if (!means.has(key)) means.set(key, new Map());
    for (const r of rs) { const mk = means.get(key); if (!mk.has(r.k)) mk.set(r.k, []); mk.get(r.k).push(r[m]); }
    if (!showCurves) continue;
    el("polyline", {points: rs.map(r => `${x(r.k)},${y(r[m])}`).join(" "), fill: "none", stroke: c,
                    "stroke-dasharray": dash(merge), "stroke-opacity": 0.35, "stroke-width": 1, class: "curve",
                    "data-group": g}, svg);
  }
  let ly = P.t + 10;
  for (const [key, mk] of means) {
    const [fam, merge] = key.split("|"), c = color(fam);
    const pts = [...mk.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => [k, v.reduce((s, u) => s + u, 0) / v.length]);
    el("polyline", {points: pts.map(([k, v]) => `${x(k)},${y(v)}`).join(" "), fill: "none", stroke: c,
                    "stroke-dasharray": dash(merge), "stroke-width": 2.5, class: "mean-curve", "data-key": key}, svg);
    for (const [k, v] of pts) {
      const dot = el("circle", {cx: x(k), cy: y(v), r: 3, fill: c, class: "point"}, svg);
      dot.addEventListener("mousemove", ev => { tip.style.display = "block"; tip.style.left = ev.clientX + 12 + "px";
        tip.style.top = ev.clientY + 12 + "px"; tip.textContent = `${D.familyLabel[fam] || fam}, ${merge}: k=${k}, ${m}=${v.toPrecision(4)}`; });
      dot.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    }
    el("line", {x1: W - P.r + 12, y1: ly - 6, x2: W - P.r + 30, y2: ly - 6, stroke: c, "stroke-width": 2.5,
                "stroke-dasharray": dash(merge)}, svg);
    el("text", {x: W - P.r + 34, y: ly - 3, "font-size": 11}, svg).textContent = `${D.familyLabel[fam] || fam}, ${merge}`;
    ly += 18;
  }
}
draw();
</script></body></html>
"""


def _fmt(x: float) -> str:
    return "" if x != x else f"{x:.3g}"  # NaN -> empty


def claims_html(claims: List[Claim]) -> str:
    head = "<tr><th>id</th><th>claim</th><th>statistic</th><th>value [95% CI]</th><th>test</th><th>p</th><th>n</th><th>verdict</th></tr>"
    body = []
    for c in claims:
        ci = f" [{_fmt(c.ci[0])}, {_fmt(c.ci[1])}]" if c.ci[0] == c.ci[0] else ""
        note = f'<div class="muted">{html.escape(c.note)}</div>' if c.note else ""
        cls = c.verdict.replace(" ", "-")
        body.append(
            f"<tr><td>{html.escape(c.id)}</td><td>{html.escape(c.claim)}</td><td>{html.escape(c.statistic)}</td>"
            f"<td>{_fmt(c.value)}{ci}</td><td>{html.escape(c.test)}</td><td>{_fmt(c.p)}</td><td>{c.n}</td>"
            f'<td class="{cls}">{html.escape(c.verdict)}{note}</td></tr>'
        )
    return f'<table id="claims">{head}{"".join(body)}</table>'


def write_dashboard(df: pd.DataFrame, claims: List[Claim], path: Path, title: str) -> Path:
    metrics = metric_columns(df)
    cols = ["family", "merge", "ordering", "seed", "k", *metrics]
    data = df[cols].astype(object).where(df[cols].notna(), None).to_dict(orient="records")
    labels = {m: METRIC_LABEL.get(m, (m, m.replace("_", " "))) for m in metrics}
    payload = {
        "rows": data, "metrics": labels, "kLabel": K_LABEL, "familyLabel": FAMILY_LABEL,
        "familyColor": FAMILY_COLOR,
    }
    subtitle = (f"{len(df)} compositions; families {', '.join(sorted(df.family.unique()))}; "
                f"merges {', '.join(sorted(df['merge'].unique()))}; {df.ordering.nunique()} orderings x "
                f"{df.seed.nunique()} seeds; k = 0..{int(df.k.max())}")
    page = (PAGE.replace("__TITLE__", html.escape(title)).replace("__SUBTITLE__", html.escape(subtitle))
            .replace("__CLAIMS__", claims_html(claims))
            .replace("__DATA__", json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")))
    path.write_text(page)
    return path
