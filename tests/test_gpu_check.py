"""scripts/gpu_check.py, the check prepared for a lent GPU, runs here at small sizes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def test_gpu_check_runs_on_the_cpu_and_every_check_passes(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["device"] == "cpu"
    rows = {r["check"]: r for r in report["rows"]}
    assert not [r for r in report["rows"] if r["ok"] is False]
    assert not [r for r in report["rows"] if r["value"].startswith("ERROR")]
    # The checks that mean something on the CPU ran and passed; the GPU-only ones say n/a.
    assert rows["golden v3.6 fp32 vs CPU fp32"]["data"]["db"] == "inf"
    assert rows["golden v4.0 fp32 vs CPU fp32"]["ok"]
    assert rows["two batches in flight vs one"]["ok"]
    (e2e,) = [r for k, r in rows.items() if k.startswith("end-to-end")]
    assert e2e["ok"] and "12 vs 12 frames" in e2e["value"]  # 2N from N = 6 on both sides
    speed = [r for k, r in rows.items() if k.startswith("model pairs/s")]
    assert len(speed) == 2
    assert all(r["data"]["pairs_per_s"] > 0 and r["data"]["baseline"] > 0 for r in speed)
    assert sum(k.endswith("2 pairs") and "--uhd" in k for k in rows) == 2
    assert rows["NVDEC vs software decoding"]["value"] == "n/a on the CPU"
    assert rows["memory model batch; out-of-memory back-offs"]["data"]["oom_backoffs"] == 0
    assert "| check | result | target | ok |" in proc.stdout
