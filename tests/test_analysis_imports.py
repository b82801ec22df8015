"""The analysis reads a results table by what the table declares about itself: it imports no torch
and, of lora_lab, only `lora_lab.schema` (no runtime, no world or family module)."""

import json
import subprocess
import sys

from conftest import ROOT

CODE = """
import json, sys
import analysis.report, analysis.figures, analysis.dashboard, analysis.simulate, analysis.stats, analysis.settings
print(json.dumps({"torch": "torch" in sys.modules,
                  "lora_lab": sorted(m for m in sys.modules if m == "lora_lab" or m.startswith("lora_lab."))}))
"""


def test_analysis_imports_only_the_schema_of_lora_lab_and_no_torch():
    r = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert loaded["torch"] is False
    assert loaded["lora_lab"] == ["lora_lab", "lora_lab.schema"]


def test_the_check_sees_a_plugin_import():
    """The same check on a process that imports a world module: it reports it (so the test above can fail)."""
    code = CODE.replace("import analysis.report,", "import lora_lab.worlds.synthetic, analysis.report,")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "lora_lab.worlds.synthetic" in json.loads(r.stdout.strip().splitlines()[-1])["lora_lab"]
