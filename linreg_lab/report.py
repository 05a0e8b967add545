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

from linreg_lab.findings import findings, num
from linreg_lab.tables import HISTORY_KEYS, best_lr_table, problem_table, tidy_histories, tidy_runs, tutorial_table


def best_table(runs: pd.DataFrame) -> pd.DataFrame:
    """best_lr_table for reading: bias^2, variance and MSE of w as 'value ± standard error' ('—' with one
    replicate, where a variance is undefined), its other numbers as they are."""
    best = best_lr_table(runs)
    for key in ("est_w_bias2", "est_w_var", "est_w_mse"):
        if key in best:
            best[key] = [num(v) if not np.isfinite(se) else f"{num(v)} ± {num(se, 2)}"
                         for v, se in zip(best[key], best.pop(key + "_se"))]
    return best


def figure_tag(path: Path) -> str:
    """An <img> with the PNG embedded, so the HTML file stands alone."""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def render_html(title: str, runs: pd.DataFrame, figures: list[tuple[str, Path | None, str]],
                tables: list[tuple[str, pd.DataFrame]], found: list[str] = ()) -> str:
    """One self-contained page, findings first; every string from the store is escaped."""
    counts = runs["state"].value_counts().to_dict() if len(runs) else {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>",
             "<p>" + html.escape(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no runs") + "</p>",
             "<h2>Findings</h2>",
             "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in found) + "</ul>" if found
             else "<p><em>nothing to show: no run finished</em></p>"]
    for heading, path, note in figures:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(figure_tag(path) if path else f"<p><em>{html.escape(note)}</em></p>")
        if path and note:
            parts.append(f"<p>{html.escape(note)}</p>")
    for heading, table in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(table.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}", na_rep="—")
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
    tables = [("Each optimizer at its best learning rate", best_table(runs)),
              ("Diverged, failed, killed and unfinished runs", problem_table(runs)),
              ("Tutorial presets: learned and true minus learned", tutorial_table(runs)),
              ("All runs", runs[[c for c in ("run_name", "state", "optimizer", "lr", "batch_size", "noise",
                                             "weight_decay", "replicates", "train/full_loss", "w_error/l2",
                                             "b_error", "time/total_s") if c in runs]])]
    runs.to_csv(out / "runs.csv", index=False)
    page = out / "report.html"
    page.write_text(render_html(title, runs, figures, tables, findings(runs)))
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
