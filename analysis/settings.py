"""Settings: which config fields differ between the rows of a results table.

Every results row carries `config`, the JSON of the config fields that determine its numbers
(flattened to dotted keys). Rows whose configs differ in any field other than
- `seed`, the unit of replication, and
- the family's own fields (`family.*`), which belong to the families being compared,
were run under different *settings* (a λ, a retain fraction, a model, a world, ...) and are never
pooled into one claim, band or curve. Within a setting, a family whose own fields differ (e.g.
two LoRA ranks) forms separate *arms*. `compose.merge` is not a setting field either: each row
names the one merge method it used (`merge`), and claims are made per merge method.
"""

from __future__ import annotations

import json
from typing import Dict, List, Tuple

import pandas as pd

REPLICATE = ("seed",)
NOT_SETTINGS = ("compose.merge",)  # the row's `merge` column says which method it used
FAMILY = "family."
ABSENT = "<absent>"


def _value(v) -> str:
    """A config value as a short, comparable string (lists and dicts as compact JSON)."""
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))


def config_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per config_hash: its flattened config fields as comparable strings."""
    first = df.drop_duplicates("config_hash").set_index("config_hash")["config"]
    records = {h: {k: _value(v) for k, v in json.loads(c).items()} for h, c in first.items()}
    return pd.DataFrame.from_dict(records, orient="index").fillna(ABSENT)


def varying(configs: pd.DataFrame) -> Tuple[List[str], Dict[str, List[str]], pd.DataFrame]:
    """(setting fields, each family's own varying fields, configs with a `_family` column)."""
    fam = configs.get("family.name", pd.Series(ABSENT, index=configs.index)).rename("_family")
    setting_fields = [c for c in configs.columns if configs[c].nunique() > 1 and c not in REPLICATE
                      and c not in NOT_SETTINGS and not c.startswith(FAMILY)]
    arm_fields: Dict[str, List[str]] = {}
    for f, g in configs.groupby(fam):
        arm_fields[f] = [c for c in configs.columns if c.startswith(FAMILY) and c != "family.name" and g[c].nunique() > 1]
    return setting_fields, arm_fields, configs.assign(_family=fam)


def labels(configs: pd.DataFrame, fields: List[str]) -> pd.Series:
    """Per config, "field=value, field=value" over `fields` ("" for none); vectorised."""
    out = pd.Series("", index=configs.index, dtype=object)
    for i, f in enumerate(fields):
        out = out + ("" if i == 0 else ", ") + f + "=" + configs[f]
    return out


def assign(df: pd.DataFrame) -> Tuple[pd.DataFrame, List[str]]:
    """`df` with `setting` (the varying setting fields, "" when nothing varies) and `arm` (the family,
    plus its own varying fields in brackets), and the list of setting fields."""
    configs = config_frame(df)
    setting_fields, arm_fields, configs = varying(configs)
    setting = labels(configs, setting_fields)
    arm = configs["_family"].astype(object).copy()
    for fam, fields in arm_fields.items():
        if fields:
            rows = configs["_family"] == fam
            arm[rows] = fam + " [" + labels(configs[rows], fields) + "]"
    out = df.assign(setting=df.config_hash.map(setting).astype(str), arm=df.config_hash.map(arm).astype(str))
    # families not named in the config (tables written by hand) fall back to the family column
    out["arm"] = out["arm"].where(~out["arm"].str.startswith(ABSENT), out["family"])
    return out, setting_fields
