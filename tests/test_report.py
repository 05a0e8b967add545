"""The report renders from real sweeps in temp stores and shows every run, whatever its fate."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import CRASHING_STEPS, ROOT, all_runs, run_cli, small_files


def report(cwd: Path, uri: str, *args: str, script: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / "report.py")] if script else [sys.executable, "-m",
                                                                                "linreg_lab.report"]
    return subprocess.run([*cmd, "--tracking-uri", uri, "--out", str(cwd / "out"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def section(page: str, heading: str) -> str:
    """The HTML between a heading and the next one."""
    return re.split(rf"<h2[^>]*>{re.escape(heading)}[^<]*</h2>", page, maxsplit=1)[1].split("<h2", 1)[0]


def sweep(tmp_path: Path, *args: str, ok: bool = True, preexec_fn=None) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_cli(list(args), tmp_path, {"MLFLOW_TRACKING_URI": uri}, preexec_fn=preexec_fn)
    assert (out.returncode == 0) == ok, out.stderr[-3000:]
    return uri


def test_report_of_one_run(tmp_path: Path) -> None:
    uri = sweep(tmp_path, "steps=200", "replicates=1")
    out = report(tmp_path, uri)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (tmp_path / "out" / "report.html").read_text()
    (run,) = all_runs(uri)
    assert run.info.run_name in page and "nothing to show" in page  # one run varies nothing
    assert "python -m linreg_lab.run -m" in section(page, "Bias and variance of w")  # says what would feed it
    assert (tmp_path / "out" / "convergence.png").is_file()
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 1 and runs["est/w_var"].isna().all() and runs["est/w_mse"].notna().all()
    assert not any(k.endswith(("_var", "_se")) for k in run.data.metrics if k.startswith(("est/", "pred/")))
    best = section(page, "Each optimizer at its best learning rate")
    row = dict(zip(re.findall(r"<th>(.*?)</th>", best), re.findall(r"<td>(.*?)</td>", best)))
    assert row["variance of ŵ"] == row["bias² of ŵ"] == row["sd of ŵ over replicates"] == "—"  # none from one sample
    assert row["MSE of ŵ"] not in ("—", "0")


def test_mission_report_shows_the_trade_off_and_opens_with_findings(tmp_path: Path) -> None:
    uri = sweep(tmp_path, "-m", "optimizer=sgd,adam", "lr=0.1,0.01")  # the README's command, defaults as shipped
    jobs = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "job"]
    assert len({r.info.run_name for r in jobs}) == 4
    assert all(r.data.metrics["est/replicates"] == 8 and r.data.metrics["est/w_var_se"] > 0 for r in jobs)
    assert {r.data.tags["theory"] for r in jobs} == {"approximate", "none"}  # sgd in batches of 10; adam
    out = report(tmp_path, uri)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.index("<h2 id='findings'>Findings</h2>") < page.index("<img")
    assert section(page, "Findings").count("<li>") >= 3
    for name in ("bias_and_variance_of_w", "bias_and_variance_of_predictions"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 5000
    caption = section(page, "Bias and variance of w")
    assert "Variance drawn for 4 runs" in caption and "measured/theory sgd variance" in caption
    assert "No theory for adam" in caption
    best = section(page, "Each optimizer at its best learning rate")
    assert best.count(" ± ") >= 6  # bias^2, variance and mse of w with their standard errors, per optimizer
    ttt = section(page, "Time to target")
    assert "best learning rate (beside its name; the lowest final training loss" in ttt


def test_tutorial_table_lists_only_preset_runs(tmp_path: Path) -> None:
    uri = sweep(tmp_path, "experiment=d2l_scratch")
    sweep(tmp_path, "steps=50")
    out = report(tmp_path, uri, "--all")
    assert out.returncode == 0, out.stderr[-3000:]
    table = section((tmp_path / "out" / "report.html").read_text(), "Tutorial presets")
    assert table.count("<td>d2l_scratch</td>") == 1 and "None" not in table and table.count("<tr>") == 1  # one body row


def test_bias_variance_preset_is_u_shaped_in_weight_decay_and_budget(tmp_path: Path) -> None:
    uri = sweep(tmp_path, "-m", "experiment=bias_variance", "hydra/launcher=pool")
    jobs = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "job"]
    assert len(jobs) == 7 * 7 and len({r.info.run_name for r in jobs}) == 49  # names tell every job apart
    assert {r.data.tags["theory"] for r in jobs} == {"exact"}
    out = report(tmp_path, uri)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    for knob, fixed in (("weight_decay", runs["steps"] == runs["steps"].max()), ("steps", runs["weight_decay"] == 0)):
        curve = runs[fixed].groupby(knob)["pred/test_mse"].mean()
        theory = runs[fixed].groupby(knob)["theory/pred/test_mse"].mean()
        low = curve.min()
        assert curve.idxmin() not in (curve.index[0], curve.index[-1]), curve
        assert low <= 0.9 * curve.iloc[0] and low <= 0.9 * curve.iloc[-1], curve
        assert theory.idxmin() == curve.idxmin() or abs(curve[theory.idxmin()] / low - 1) < 0.05
        optimum = runs[fixed]["theory/best_weight_decay" if knob == "weight_decay" else "theory/best_steps"].median()
        assert curve.index[0] < optimum < curve.index[-1]
    page = (tmp_path / "out" / "report.html").read_text()
    findings = section(page, "Findings")
    assert "Against weight decay" in findings and "Against budget" in findings and "theory&#x27;s optimum" in findings


def test_report_of_a_2x2_sweep_is_self_contained_and_logged_on_the_parent(tmp_path: Path) -> None:
    uri = sweep(tmp_path, "-m", "optimizer=sgd,adam", "lr=0.1,0.01", "steps=300", "replicates=3")
    out = report(tmp_path, uri, script=True)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (tmp_path / "out" / "report.html").read_text()
    jobs = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "job"]
    assert len(jobs) == 4 and all(r.info.run_name in page for r in jobs)
    assert page.count("data:image/png;base64,") >= 4 and "src=\"http" not in page
    for png in ("convergence", "learning-rate_sensitivity", "heatmap", "wall_time", "time_to_target"):
        assert (tmp_path / "out" / f"{png}.png").stat().st_size > 5000, png
    best = section(page, "Each optimizer at its best learning rate")
    assert "<td>sgd</td>" in best and "<td>adam</td>" in best
    (parent,) = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "sweep"]
    logged = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/runs.csv", "report/convergence.png"} <= logged


def test_report_shows_diverged_failed_and_killed_runs_and_no_fake_numbers(tmp_path: Path) -> None:
    uri = sweep(tmp_path, "-m", "lr=0.1,100", f"steps=100,{CRASHING_STEPS}", ok=False,
                preexec_fn=small_files)  # lr 100 diverges; lr 0.1's long run cannot write its artifacts
    client = MlflowClient(uri)
    finished = [r for r in all_runs(uri) if r.info.status == "FINISHED" and r.data.tags["run_kind"] == "job"]
    client.set_terminated(finished[0].info.run_id, "KILLED")  # as a signal would leave it
    out = report(tmp_path, uri)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert {"diverged", "failed", "killed"} <= set(runs["state"])
    numbers = runs.select_dtypes("number").abs()
    assert not (numbers >= 1e300).any().any()  # MLflow's stand-in for inf never becomes a number
    page = (tmp_path / "out" / "report.html").read_text()
    problems = section(page, "Diverged, failed, killed and unfinished runs")
    assert all(f"<td>{s}</td>" in problems for s in ("diverged", "failed", "killed"))
    assert "1.8e+308" not in page and "1.798e+308" not in page


def test_strings_from_the_store_stay_inert(tmp_path: Path) -> None:
    uri = sweep(tmp_path, "steps=50")
    (run,) = all_runs(uri)
    MlflowClient(uri).set_tag(run.info.run_id, "mlflow.runName", "<script>alert(1)</script>")
    out = report(tmp_path, uri)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_tables_read_with_units_and_four_digits_and_long_ones_fold() -> None:
    from linreg_lab.report import OPEN_ROWS, render_html

    runs = pd.DataFrame({"run_name": [f"r{i}" for i in range(OPEN_ROWS + 1)], "lr": 0.1,
                         "train/full_loss": [1 / 3 + i for i in range(OPEN_ROWS + 1)], "replicates": 8})
    header = {"command": "python -m linreg_lab.run -m lr=0.1", "MLflow UI": "http://127.0.0.1:5000/#/x",
              "git commit": "<b>abc</b>"}
    page = render_html("t", header, [], [("Short", runs.head(2)), ("Long", runs)], ["a finding"])
    short, long = section(page, "Short"), section(page, "Long")
    assert "<details>" not in short and "<th>final loss (train set)</th>" in short
    assert "<td>0.3333</td>" in short and "<td>8</td>" in short and "0.333333" not in page  # 4 digits, ints whole
    assert long.startswith("\n<details><summary>13 rows") and long.count("<tr>") == OPEN_ROWS + 1  # every row, folded
    assert '<a href="http://127.0.0.1:5000/#/x">' in page and "&lt;b&gt;abc&lt;/b&gt;" in page
    assert page.index("<nav>") < page.index("id='findings'") and "href='#long'" in page


def test_report_errors_are_one_line(tmp_path: Path) -> None:
    out = report(tmp_path, f"sqlite:///{tmp_path / 'none.db'}")
    assert out.returncode == 1 and out.stderr.strip().startswith("linreg_lab report: error: no store at")


def test_study_presets_declare_their_sweeps_and_report(tmp_path: Path) -> None:
    uri = sweep(tmp_path, "-m", "experiment=bias_variance", "steps=60", "replicates=4")  # CLI beats the preset
    jobs = [r for r in all_runs(uri) if r.data.tags["run_kind"] == "job"]
    assert len(jobs) == 7  # the weight decays; the budget axis was overridden
    assert {r.data.params["optimizer.weight_decay"] for r in jobs} == {"0.0", "0.01", "0.03", "0.1", "0.3", "1.0",
                                                                      "3.0"}
    assert all(r.data.metrics["est/replicates"] == 4 for r in jobs)
    out = report(tmp_path, uri)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "out" / "bias_and_variance_of_w.png").stat().st_size > 5000

    uri2 = f"sqlite:///{tmp_path / 'bench.db'}"
    run = run_cli(["-m", "experiment=optimizer_benchmark", "steps=50", "replicates=2"], tmp_path,
                  {"MLFLOW_TRACKING_URI": uri2})
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = [r for r in all_runs(uri2) if r.data.tags["run_kind"] == "job"]
    assert len(jobs) == 4 * 7 and len({r.data.params["lr"] for r in jobs}) == 7
    out = report(tmp_path, uri2)
    assert out.returncode == 0, out.stderr[-3000:]
    best = section((tmp_path / "out" / "report.html").read_text(), "Each optimizer at its best learning rate")
    assert all(f"<td>{o}</td>" in best for o in ("sgd", "momentum", "rmsprop", "adam"))
    assert "sd of ŵ over replicates" in best


def test_wall_time_of_many_runs_is_drawn_per_optimizer() -> None:
    """Past 40 runs a bar per run is unreadable: one bar per optimizer at the median, whiskers at 10 and 90%."""
    import numpy as np

    from linreg_lab import plots

    total = np.r_[np.linspace(1.0, 2.0, 30), np.linspace(5.0, 9.0, 20)]
    runs = pd.DataFrame({"run_name": [f"r{i}" for i in range(50)], "optimizer": ["sgd"] * 30 + ["adam"] * 20,
                         "time/total_s": total, "time/train_s": total / 2})
    fig, note = plots.wall_time(runs, None)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["adam (20 runs)", "sgd (30 runs)"]
    whole, loop = ([bar.get_width() for bar in c] for c in ax.containers if hasattr(c, "patches"))
    assert np.allclose(whole, [np.median(total[30:]), np.median(total[:30])])  # adam, sgd
    assert np.allclose(loop, np.divide(whole, 2))
    assert "50 runs" in note and "median" in note
    plots.plt.close(fig)


def test_convergence_keeps_minor_ticks_only_on_short_log_axes() -> None:
    """Minor ticks carry the labels of an axis spanning under a decade; over many decades they are ~80
    unlabelled marks a panel that cost most of the figure's drawing time, and are dropped."""
    import numpy as np

    from linreg_lab import plots

    def panel(steps: int, losses: np.ndarray):
        hist = pd.DataFrame({"run_id": "r", "metric": "train/loss", "optimizer": "sgd", "lr": 0.1,
                             "step": np.arange(1, steps + 1), "value": losses})
        fig, _ = plots.convergence(pd.DataFrame({"optimizer": ["sgd"]}), hist)
        ax = fig.axes[0]
        minor = (len(ax.xaxis.get_minorticklocs()), len(ax.yaxis.get_minorticklocs()))
        plots.plt.close(fig)
        return minor

    wide_x, wide_y = panel(1000, np.geomspace(10.0, 1e-6, 1000))
    assert wide_x == 0 and wide_y == 0
    short_x, _ = panel(8, np.geomspace(10.0, 1e-6, 8))  # steps 1..8: no decade tick past 1
    assert short_x > 0


def test_runs_of_one_replicate_pool_their_seeds_for_the_spread_of_w(tmp_path: Path) -> None:
    import numpy as np

    from linreg_lab.tables import collapse_seeds

    uri = sweep(tmp_path, "-m", "lr=0.1,0.01", "seed=0,1,2", "replicates=1", "noise=0.5", "steps=200")
    out = report(tmp_path, uri)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "2 points pool runs of one replicate across their seeds" in section(page, "Bias and variance of w")
    assert "nothing to show: every run has one replicate" in section(page, "Bias and variance of predictions")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert runs["est/w_var"].isna().all()  # the runs themselves claim no variance
    pooled = collapse_seeds(runs)
    assert len(pooled) == 2 and set(pooled["spread"]) == {"seeds"} and set(pooled["est/replicates"]) == {3}
    for _, row in pooled.iterrows():
        w = runs.loc[runs["lr"] == row["lr"], ["w/0", "w/1"]].to_numpy()
        assert row["est/w_var"] == pytest.approx(np.var(w, axis=0, ddof=1).sum(), rel=1e-9)
        assert row["est/w_mse"] == pytest.approx(((w - [2.0, -3.4]) ** 2).sum(1).mean(), rel=1e-9)
