"""scripts/gpu_check.py, the check prepared for a lent GPU, runs here at small sizes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def test_gpu_check_runs_on_the_cpu_and_every_check_passes(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] and report["done"] and report["device"] == "cpu"
    rows = {r["check"]: r for r in report["rows"]}
    assert not [r for r in report["rows"] if r["ok"] is False]
    assert not [
        r for r in report["rows"] if r["value"].startswith(("ERROR", "skipped: would overrun"))
    ]
    # The checks that mean something on the CPU ran and passed; the GPU-only ones say n/a.
    assert rows["golden v3.6 fp32 vs CPU fp32"]["data"]["db"] == "inf"
    assert rows["golden v4.0 fp32 vs CPU fp32"]["data"]["db"] == "inf"
    assert rows["two batches in flight vs one (deterministic algorithms)"]["ok"]
    (e2e,) = [r for k, r in rows.items() if k.startswith("end-to-end")]
    assert e2e["ok"] and "12 vs 12 frames" in e2e["value"]  # 2N from N = 6 on both sides
    speed = [r for k, r in rows.items() if k.startswith("model pairs/s") and "data" in r]
    eager = [r for r in speed if r["data"].get("mode") == "eager"]
    assert len(eager) == 8  # v3.6, v4.0, v4.6, v4.26 at both sizes
    assert all(r["data"]["pairs_per_s"] > 0 for r in eager)
    assert sum(k.startswith("memory") and k.endswith("2 pairs") for k in rows) == 2
    assert rows["--devices cpu vs plain run"]["ok"]
    assert rows["NVDEC vs software decoding"]["value"] == "n/a on the CPU"
    assert rows["out-of-memory back-offs in this run"]["data"]["oom"] == 0
    assert "| check | result | target | ok | s |" in proc.stdout
    # The table file holds every row, written as each finished.
    table = (out / "gpu_check.md").read_text()
    assert all(f"| {r['check']} |" in table for r in report["rows"])


def test_the_cpu_reference_is_made_in_another_process(tmp_path, monkeypatch):
    """Defect 9: the CPU golden engine's allocator setting (M_ARENA_MAX) must stay out of the
    process that then times the end-to-end rows."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    calls = []
    real = subprocess.run

    def spy(cmd, *a, **kw):
        calls.append(cmd)
        return real(cmd, *a, **kw)

    monkeypatch.setattr(gpu_check.subprocess, "run", spy)
    report = gpu_check.Report(tmp_path, {"machine": "test", "device": "cpu"})
    check = gpu_check.GpuCheck("cpu", tmp_path, report, 600)
    ref = check.reference()
    assert any("--cpu-reference" in c for c in calls)
    assert set(ref) == {"v3.6/I0", "v4.0/I0"}
    assert all(v.dtype.name == "uint8" and v.ndim == 3 for v in ref.values())


def test_a_check_whose_reservation_overruns_the_budget_is_skipped_with_a_row(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    report = gpu_check.Report(tmp_path / "out", {"machine": "test", "device": "cpu"})
    check = gpu_check.GpuCheck("cpu", tmp_path, report, budget_s=100)
    ran: list[str] = []

    def first():
        ran.append("first")
        check.add("first", "1")

    def too_long():
        ran.append("too_long")

    def broken():
        ran.append("broken")
        raise RuntimeError("boom")

    def last():
        ran.append("last")
        check.add("last", "2", ok=True)

    # Reservations are (GPU seconds, CPU seconds); 1000 s never fits a 100 s budget, however
    # fast this machine is, and 1 s always does.
    check.plan = lambda: [(first, 1, 1), (too_long, 1000, 1000), (broken, 1, 1), (last, 1, 1)]
    check.run()
    assert ran == ["first", "broken", "last"]
    rows = {r.check: r for r in report.rows}
    assert list(rows) == ["first", "too_long", "broken", "last"]
    assert rows["too_long"].value.startswith("skipped: would overrun (")
    assert rows["too_long"].value.endswith(" s left of 100 s)")
    assert rows["too_long"].ok is None
    assert rows["broken"].value == "ERROR RuntimeError: boom" and rows["broken"].ok is False
    assert not report.ok  # a failed check fails the run; a skipped one does not
    saved = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [r["check"] for r in saved["rows"]] == list(rows)
