"""The comparison report: `python -m linreg_lab.report` (also `python scripts/report.py`).

Reads a sweep (the latest by default) from the store into tidy pandas tables, draws the
figures (linreg_lab.plots), and writes one self-contained HTML file, the PNGs and the
runs table as CSV, which are also logged as artifacts of the sweep's parent run.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PARAMS = {  # store column -> report column
    "params.optimizer.name": "optimizer", "params.lr": "lr", "params.batch_size": "batch_size",
    "params.noise": "noise", "params.optimizer.weight_decay": "weight_decay", "params.steps": "steps",
    "params.replicates": "replicates", "params.seed": "seed", "params.model.name": "model",
    "params.experiment": "preset", "params.model.weight_decay": "model_weight_decay",
    "params.data.true_w": "true_w", "params.data.true_b": "true_b",
}
NUMERIC = ["lr", "noise", "weight_decay", "steps", "replicates", "seed", "model_weight_decay", "true_b"]
HISTORY_KEYS = ["train/loss", "train/loss_p10", "train/loss_p90", "train/full_loss"]
METRICS = ["train/full_loss", "w_error/l2", "b_error", "b", "ols/loss", "time/total_s", "time/train_s",
           "theory/lr_max", "theory/w_var", "est/w_bias2", "est/w_var", "est/w_mse", "est/replicates",
           "est/b_bias2", "est/b_var",
           "pred/bias2", "pred/var", "pred/test_mse", "ttt/steps", "ttt/seconds", "ttt/censored", "diverged_step",
           "diverged_fraction"]  # always present as columns (NaN where a run has none), so figures can rely on them
HUGE = 1e300  # MLflow stores +-inf as +-1.8e308: anything this large is not a number to plot


def state(row: pd.Series) -> str:
    """finished, diverged, failed, killed or running (a RUNNING run is never counted as finished)."""
    status = row["status"]
    if status == "FINISHED":
        return "diverged" if row.get("tags.outcome") == "diverged" else "finished"
    return {"FAILED": "failed", "KILLED": "killed"}.get(status, "running")


def tidy_runs(rows: list[dict]) -> pd.DataFrame:
    """One row per run: settings as typed columns, metrics under their own names, a `state` column."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["state"] = df.apply(state, axis=1)
    df = df.rename(columns=PARAMS).rename(columns=lambda c: c[len("metrics."):] if c.startswith("metrics.") else c)
    for col in list(PARAMS.values()) + METRICS + ["tags.outcome", "tags.overrides", "tags.error", "tags.stability"]:
        if col not in df:
            df[col] = np.nan
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["batch_size"] = df["batch_size"].astype(str)
    df["weight_decay"] = df["weight_decay"].fillna(df["model_weight_decay"])
    df["optimizer"] = df["optimizer"].where(~df["model"].isin(["closed_form", "grid"]), df["model"])  # solvers
    metric_cols = [c for c in df.columns if ("/" in c and not c.startswith("tags.")) or c in METRICS]
    for col in metric_cols:
        df[col] = pd.to_numeric(df[col], errors="coerce").where(lambda v: v.abs() < HUGE)
    return df.sort_values("start_time").reset_index(drop=True)


def tidy_histories(points: list[tuple[str, str, int, float]], runs: pd.DataFrame) -> pd.DataFrame:
    """Long format: run_id, metric, step, value and the run's settings; non-numbers dropped."""
    df = pd.DataFrame(points, columns=["run_id", "metric", "step", "value"])
    df = df[np.isfinite(df["value"]) & (df["value"].abs() < HUGE)]
    keep = ["run_id", "run_name", "optimizer", "lr", "batch_size", "noise", "weight_decay", "state", "ols/loss"]
    return df.merge(runs[[c for c in keep if c in runs]], on="run_id")


def best_lr_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer: its best learning rate (lowest mean final training loss over runs that did not
    diverge), with final loss, w bias and spread, and time to target at that rate."""
    ok = runs[(runs["state"] == "finished") & runs["train/full_loss"].notna()] if len(runs) else runs
    if ok.empty or "optimizer" not in ok:
        return pd.DataFrame()
    by = ok.groupby(["optimizer", "lr"], dropna=False)
    agg = by.agg(final_loss=("train/full_loss", "mean"), runs=("run_id", "count"),
                 w_error=("w_error/l2", "mean"), w_error_sd=("w_error/l2", "std"),
                 **{c.replace("/", "_"): (c, "mean") for c in ("est/w_bias2", "est/w_var", "est/b_bias2",
                                                              "est/b_var", "ttt/steps", "ttt/seconds",
                                                              "ttt/censored") if c in ok})
    if "est_w_var" in agg:
        agg["w_sd_replicates"] = np.sqrt(agg["est_w_var"])  # spread of w_hat across replicates
    best = agg.reset_index().sort_values("final_loss").groupby("optimizer", as_index=False).first()
    return best.rename(columns={"lr": "best_lr"}).sort_values("final_loss").reset_index(drop=True)


def tutorial_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The tutorials' own numbers for preset runs: learned w and b, and true minus learned."""
    if "preset" not in runs or runs["preset"].isna().all():
        return pd.DataFrame()
    rows = []
    for _, r in runs[runs["preset"].notna() & (runs["state"] != "running")].iterrows():
        row = {"run": r["run_name"], "preset": r["preset"], "state": r["state"]}
        for i in range(8):
            if f"w/{i}" in r and pd.notna(r[f"w/{i}"]):
                row[f"w{i}"], row[f"true-w{i}"] = r[f"w/{i}"], -r[f"w_error/{i}"]
        row["b"], row["true-b"] = r.get("b"), -r.get("b_error", np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def problem_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that did not simply finish, each state listed separately."""
    cols = [c for c in ("state", "run_name", "tags.overrides", "diverged_step", "diverged_fraction", "lr",
                        "theory/lr_max", "tags.stability", "tags.error") if c in runs]
    bad = runs[runs["state"] != "finished"][cols] if len(runs) else runs
    return bad.sort_values("state").rename(columns={"tags.overrides": "overrides", "tags.error": "error",
                                                    "tags.stability": "vs theory"})


def figure_tag(path: Path) -> str:
    """An <img> with the PNG embedded, so the HTML file stands alone."""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def render_html(title: str, runs: pd.DataFrame, figures: list[tuple[str, Path | None, str]],
                tables: list[tuple[str, pd.DataFrame]]) -> str:
    """One self-contained page; every string from the store is escaped."""
    counts = runs["state"].value_counts().to_dict() if len(runs) else {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>",
             "<p>" + html.escape(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no runs") + "</p>"]
    for heading, path, note in figures:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(figure_tag(path) if path else f"<p><em>{html.escape(note)}</em></p>")
        if path and note:
            parts.append(f"<p>{html.escape(note)}</p>")
    for heading, table in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(table.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}", na_rep="")
                     if len(table) else "<p><em>nothing to show</em></p>")
    return "\n".join(parts + ["</body></html>"])


def build(runs: pd.DataFrame, hist: pd.DataFrame, out: Path, title: str) -> Path:
    """Draw every figure, write report.html, the PNGs and runs.csv into `out`; return the HTML path."""
    from linreg_lab import plots

    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for heading, draw in plots.REPORT_FIGURES:
        try:
            fig, note = draw(runs, hist)
        except Exception as err:  # one broken figure must not cost the whole report
            print(f"linreg_lab report: figure {heading!r} failed: {err}", file=sys.stderr)
            fig, note = None, f"this figure could not be drawn: {type(err).__name__}: {err}"
        path = None
        if fig is not None:
            path = out / f"{heading.split(':')[0].lower().replace(' ', '_')}.png"
            plots.save(fig, path)
        figures.append((heading, path, note))
    tables = [("Each optimizer at its best learning rate", best_lr_table(runs)),
              ("Diverged, failed, killed and unfinished runs", problem_table(runs)),
              ("Tutorial presets: learned and true minus learned", tutorial_table(runs)),
              ("All runs", runs[[c for c in ("run_name", "state", "optimizer", "lr", "batch_size", "noise",
                                             "weight_decay", "replicates", "train/full_loss", "w_error/l2",
                                             "b_error", "time/total_s") if c in runs]])]
    runs.to_csv(out / "runs.csv", index=False)
    page = out / "report.html"
    page.write_text(render_html(title, runs, figures, tables))
    return page


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m linreg_lab.report", description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    p.add_argument("--experiment", default="linreg_lab", help="MLflow experiment name (default: linreg_lab)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--sweep", help="parent run id of the sweep to report (default: the latest sweep)")
    which.add_argument("--all", action="store_true", help="report every job run of the experiment")
    p.add_argument("--out", default="report", help="output folder (default: ./report)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Report on a sweep; returns the exit status."""
    import os

    from linreg_lab.config import resolve_tracking_uri

    args = parse_args(sys.argv[1:] if argv is None else argv)
    uri = resolve_tracking_uri(args.tracking_uri, os.getcwd(), env_first=False)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        print(f"linreg_lab report: error: no store at {uri}; run a sweep first or pass --tracking-uri",
              file=sys.stderr)
        return 1
    from linreg_lab import tracking

    client = tracking.connect(uri)
    exp_id = tracking.experiment_id(client, args.experiment)
    if exp_id is None:
        print(f"linreg_lab report: error: experiment {args.experiment!r} is not in {uri}", file=sys.stderr)
        return 1
    tracking.reap_orphans(client, exp_id)
    parent = None if args.all else (args.sweep or tracking.latest_sweep(client, exp_id))
    runs = tidy_runs(tracking.child_runs(client, exp_id, parent))
    if runs.empty:
        what = f"sweep {parent}" if parent else f"experiment {args.experiment!r}"
        print(f"linreg_lab report: error: {what} has no job runs", file=sys.stderr)
        return 1
    hist = tidy_histories(tracking.metric_histories(client, list(runs["run_id"]), HISTORY_KEYS), runs)
    title = f"linreg_lab report: {tracking.run_info(client, parent)[1] if parent else args.experiment}"
    page = build(runs, hist, Path(args.out), title)
    if parent:
        tracking.attach_report(client, parent, Path(args.out))
    print(f"report of {len(runs)} runs ({', '.join(f'{v} {k}' for k, v in runs['state'].value_counts().items())}):"
          f" {page}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
