"""The benchmark script runs in quick mode and produces every row (figures are printed, never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BENCH = ROOT / "scripts" / "bench.py"


def test_bench_quick_mode_produces_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--json", str(out)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "quick" and result["cpus"] >= 1 and result["torch"].startswith("2.13")
    rows = {r["row"].split(".")[0]: r for r in result["rows"] if r["row"][0].isdigit()}
    assert sorted(rows, key=int) == [str(i) for i in range(1, 13)]
    for r in result["rows"]:
        if r["row"].startswith(("8.", "11.", "    their histories")):
            continue  # no CUDA device, the presets' rows are --full's (the row says so), a difference of two times
        assert math.isfinite(r["harness"]) and r["harness"] > 0, r
        assert r["row"] in proc.stdout  # the printed table has it too
    assert sorted(r["row"].split()[1] for r in result["rows"] if r["row"].startswith("7.")) == ["joblib", "pool"]
    spans = [r for r in result["rows"] if r["row"].strip().startswith("its jobs alone")]
    assert len(spans) == 2 and all(0 < r["parallel_s"] and 0 < r["basic_s"] for r in spans)
    commands = [r for r in result["rows"] if r["row"].startswith("7.")]
    assert all(s["basic_s"] < c["basic_s"] for s, c in zip(spans, commands))  # the jobs are part of the command
    loops = [r for r in result["rows"] if r["row"].startswith("3. loop, manual (default)")]
    assert [r["row"].split("R=")[1].split()[0] for r in loops] == ["1", "8", "10", "100", "1000"]
    assert any(r["row"].startswith("3. loop, manual, R=8 (default) / R=1") for r in result["rows"])
    judged = [r for r in result["rows"] if r["target"] and not r["row"].startswith(("6.", "10."))]  # 1000 runs: --full
    assert all(r["met"] in (True, False) for r in judged)
    assert rows["10"]["points"] == 100 * 1000  # the 100 jobs' training loss, every step
    big = rows["5"]  # projected through two commands of 52 and 100 jobs: a line whose slope is a job's pace
    assert 0 < big["seconds_52"] and 0 < big["seconds_100"]
    assert big["harness"] == pytest.approx(big["seconds_100"] + 900 * big["per_job_s"])
    floor = [r for r in result["rows"] if "MLflow's fewest calls for its" in r["row"]]  # row 5's store's floor
    assert len(floor) == 1 and floor[0]["runs"] == 100 and floor[0]["harness"] > 0
    assert rows["9"]["reference"] > 0  # MLflow's own client, writing the same rows, measured beside ours
    from linreg_lab import curves  # a job's histories are thinned: at most their caps beside its final values

    cap = curves.LOGGED_POINTS + 4 * curves.SIDE_POINTS  # train/loss, its two percentile bands, two evaluations
    assert rows["12"]["finals"] + curves.LOGGED_POINTS // 2 < rows["12"]["harness"] <= rows["12"]["finals"] + cap


def test_bench_bad_arguments_fail_at_once(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--repeats", "0"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--repeats must be at least 1, got 0" in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
