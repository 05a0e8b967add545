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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from linreg_lab import batch_scaling, conditioning, describe
from linreg_lab import contract as C
from linreg_lab.double_descent import curve_table
from linreg_lab.findings import findings, num
from linreg_lab.lifecycle import skip_final_collections
from linreg_lab.tables import HISTORY_KEYS, best_lr_table, problem_table, tidy_histories, tidy_runs, tutorial_table

COLUMNS = {  # table column -> heading with its unit (the loss is in squared units of y)
    "optimizer": "optimizer", "best_lr": "best lr", "final_loss": "final loss (train set)", "runs": "runs",
    "replicates": "replicates per run", "w_error": "‖ŵ − w‖ (mean)", "w_error_sd": "sd of ‖ŵ − w‖ over runs",
    "w_sd_replicates": "sd of ŵ over replicates", "est_w_bias2": "bias² of ŵ", "est_w_var": "variance of ŵ",
    "est_w_mse": "MSE of ŵ", "est_w_opt_mse": "‖ŵ − w_ols‖² (optimizer's part)",
    "est_w_stat_mse": "‖w_ols − w‖² (data's part)", "ttt_steps": "time to target (steps)",
    "ttt_seconds": "time to target (s)", "ttt_censored": "share never at target",
    "run_name": "run", "state": "state", "lr": "lr", "batch_size": "batch size", "noise": "noise (σ)",
    "weight_decay": "weight decay", C.FULL_LOSS: "final loss (train set)", C.W_ERROR: "‖ŵ − w‖",
    C.B_ERROR: "b̂ − b", C.TIME_TOTAL: "time (s)", C.DIVERGED_STEP: "diverged at step",
    C.DIVERGED_FRACTION: "share of replicates diverged", C.THEORY_LR_MAX: "2/λmax",
}
ALL_RUNS = ["run_name", "state", "optimizer", "lr", "batch_size", "noise", "weight_decay", "replicates",
            C.FULL_LOSS, C.W_ERROR, C.B_ERROR, C.TIME_TOTAL]
OPEN_ROWS = 12  # a longer table is collapsed (<details>) until the reader opens it
LOOK_AT = {  # what each figure is for, said first in its caption
    "Convergence": "Look at which rate reaches the dashed least-squares floor first, and how wide its band is.",
    "Time to target": "Look at the shortest bars: the optimizer that gets close to the best fit soonest.",
    "Learning-rate sensitivity": "Look at how flat each line is: a flat line forgives a badly chosen rate.",
    "Bias and variance of w": "Look at where the MSE row dips: there bias² and variance balance.",
    "Bias and variance of predictions": "Look at the test MSE row: the error a user of the fit would see.",
    "Heatmap: final w error": "Look for the light cells: the optimizer and rate with the smallest error.",
    "Wall time": "Look at the training loop's share: the rest is data, scoring and logging.",
    "Conditioning": "Look at how steep each line is: slope 1 is steps growing as κ, slope 1/2 as √κ, 0 not at all.",
    "Batch-size scaling": "Look at where each line leaves the perfect-scaling guide and flattens: the critical "
                          "batch size.",
    "Best rate against batch size": "Look at the slope below the critical batch size: 1 is a rate in proportion "
                                    "to the batch.",
    "Double descent": "Look at the spike at p = n in the minimum-norm curve, the descent past it, and the series "
                      "that have none.",
}


def cell(value, digits: int = 4) -> str:
    """A table cell: a number to `digits` significant digits, a dash where there is none, whole numbers
    and text as they are."""
    if isinstance(value, str):
        return value
    if value is not None and np.isfinite(value) and float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return num(value, digits)


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers to 4 significant digits, columns under their headings with units."""
    return table.apply(lambda col: col.map(cell) if col.dtype.kind in "fiu" else col).rename(columns=COLUMNS)


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


def anchor(heading: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in heading.lower()).strip("-")


def table_html(table: pd.DataFrame) -> str:
    """The table, escaped; past OPEN_ROWS rows folded in a <details> that says how many."""
    if not len(table):
        return "<p><em>nothing to show</em></p>"
    body = f"<div class='wide'>{readable(table).to_html(index=False, escape=True, na_rep='—', border=0)}</div>"
    if len(table) <= OPEN_ROWS:
        return body
    return f"<details><summary>{len(table)} rows: show</summary>{body}</details>"


STYLE = ("body{font-family:system-ui,sans-serif;font-size:14px;max-width:1180px;margin:auto;padding:0 16px;"
         "line-height:1.35}"
         "h1{font-size:1.5em;margin:.5em 0 .2em}h2{font-size:1.2em;margin:1.2em 0 .3em}"
         "dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:0 12px;font-size:13px;margin:0}"
         "dl.meta dt{color:#555}dl.meta dd{margin:0;font-family:monospace;overflow-wrap:anywhere}"
         "nav ol{display:flex;flex-wrap:wrap;gap:2px 18px;padding:0;margin:.4em 0;list-style:none;font-size:13px}"
         "figure{margin:0}img{max-width:100%;max-height:560px}figcaption{font-size:14px;color:#333;max-width:900px}"
         "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
         ".wide{overflow-x:auto;max-width:100%}td{text-align:right;white-space:nowrap}th{background:#f4f4f4}summary{cursor:pointer;color:#0645ad}")


def render_html(title: str, header: dict[str, str], figures: list[tuple[str, Path | None, str]],
                tables: list[tuple[str, pd.DataFrame]], found: list[str] = ()) -> str:
    """One self-contained page: header, contents, findings, figures, tables; every string from the
    store is escaped (a link only where the header names a URL)."""
    sections = ["Findings"] + [h for h, _, _ in figures] + [h for h, _ in tables]
    meta = "".join(f"<dt>{html.escape(k)}</dt><dd>" + (f'<a href="{html.escape(v)}">{html.escape(v)}</a>'
                   if v.startswith(("http://", "https://")) else html.escape(v)) + "</dd>" for k, v in header.items())
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<header><h1>{html.escape(title)}</h1><dl class='meta'>{meta}</dl></header>",
             "<nav><ol>" + "".join(f"<li><a href='#{anchor(h)}'>{html.escape(h)}</a></li>" for h in sections)
             + "</ol></nav>",
             "<h2 id='findings'>Findings</h2>",
             "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in found) + "</ul>" if found
             else "<p><em>nothing to show: no run finished</em></p>"]
    for heading, path, note in figures:
        parts.append(f"<h2 id='{anchor(heading)}'>{html.escape(heading)}</h2>")
        if path:
            caption = " ".join(x for x in (LOOK_AT.get(heading, ""), note) if x)
            parts.append(f"<figure>{figure_tag(path)}<figcaption>{html.escape(caption)}</figcaption></figure>")
        else:
            parts.append(f"<p><em>{html.escape(note)}</em></p>")
    for heading, table in tables:
        parts.append(f"<h2 id='{anchor(heading)}'>{html.escape(heading)}</h2>")
        parts.append(table_html(table))
    return "\n".join(parts + ["</body></html>"])


def build(runs: pd.DataFrame, hist: pd.DataFrame, out: Path, title: str, header: dict[str, str]) -> Path:
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
        if fig is None and note is None:  # a study's figure, and these runs are not that study
            continue
        path = None
        if fig is not None:
            path = out / f"{heading.split(':')[0].lower().replace(' ', '_')}.png"
            plots.save(fig, path)
        figures.append((heading, path, note))
    tables = [*study_tables(runs),
              ("Diverged, failed, killed and unfinished runs", problem_table(runs)),
              ("Tutorial presets: learned and true minus learned", tutorial_table(runs)),
              ("All runs", runs[[c for c in ALL_RUNS if c in runs]])]
    runs.to_csv(out / C.RUNS_CSV, index=False)
    page = out / C.REPORT_HTML
    page.write_text(render_html(title, header, figures, tables, findings(runs)))
    return page


def study_tables(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A study's own first tables in place of the best-rate table (whose rule, lowest final loss, is not the
    study's), or that table."""
    study = curve_table(runs)
    if len(study):  # no rate is tuned in the double-descent study
        return [("Double descent: each series at each p (bias², variance given the design; theory_*: exact "
                 "expectations, ridge's the Marchenko-Pastur limit)", study)]
    steps = conditioning.steps_table(runs)
    if len(steps):
        return [("Conditioning: each optimizer at its best rate (fewest steps to target) per κ and basis; tuned_*: "
                 "the theory-tuned run (sgd: 2/(L+μ), momentum: Polyak)", steps),
                ("Conditioning: fitted slopes of steps against κ (log-log)", conditioning.slopes(steps))]
    scaling = batch_scaling.steps_table(runs)
    if len(scaling):
        return [("Batch-size scaling: each optimizer at each batch size's best rate (fewest steps to target); fit_*: "
                 "S(B) = S_min (1 + B_noise / B); theory_steps: theory's fewest over the same rates", scaling)]
    return [("Each optimizer at its best learning rate (lowest final loss)", best_table(runs))]


def runs_by_state(runs: pd.DataFrame) -> str:
    return ", ".join(f"{v} {k}" for k, v in runs["state"].value_counts().items()) if len(runs) else "none"


def page_header(runs: pd.DataFrame, uri: str, ui: str, parent_tags: dict[str, str] | None) -> dict[str, str]:
    """What the page reports on: the sweep's command, the store, the MLflow UI, the date, the commit, the runs."""
    tags = parent_tags or {}
    command = tags.get(C.COMMAND) or (f"python -m linreg_lab.run -m {tags[C.OVERRIDES]}" if C.OVERRIDES in tags
                                      else "every job run of the experiment (--all)")
    commit_col = f"tags.{C.GIT_COMMIT}"
    commits = runs[commit_col].dropna().unique() if commit_col in runs else []
    commit = ", ".join(c[:12] for c in commits) if len(commits) else "— (the runs were not made from a git checkout)"
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = {"command": command, "tracking store": uri, "MLflow UI": ui, "made": made, "git commit": commit,
              "runs": runs_by_state(runs)}
    best = runs[runs["run_id"] == tags.get(C.BEST_RUN_ID)]
    if len(best) and "objective" in best:
        row = best.iloc[0]
        objective = row["objective"]
        value = row[objective] if objective in row else np.nan
        header["best run"] = (f"{row['run_name']} ({objective} = {num(value, 6)}; overrides: "
                              f"{row.get('tags.overrides', '')})")
    return header


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m linreg_lab.report", description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri",
                   help=f"MLflow store (default: {C.TRACKING_URI_ENV}, else sqlite:///mlflow.db here)")
    p.add_argument("--experiment", default="linreg_lab", help="MLflow experiment name (default: linreg_lab)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--sweep", help="parent run id of the sweep to report (default: the latest sweep)")
    which.add_argument("--all", action="store_true", help="report every job run of the experiment")
    p.add_argument("--out", default="report", help="output folder (default: ./report)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Report on a sweep; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from linreg_lab import results, tracking

    try:
        client, exp_id, uri = results.open_store(args.tracking_uri, args.experiment)
        tracking.reap_orphans(client, exp_id)
        parent = None if args.all else (args.sweep or tracking.latest_sweep(client, exp_id))
        runs = tidy_runs(results.runs(parent, args.experiment, uri))
    except ValueError as err:
        print(f"linreg_lab report: error: {err}", file=sys.stderr)
        return 1
    if runs.empty:
        what = f"sweep {parent}" if parent else f"experiment {args.experiment!r}"
        print(f"linreg_lab report: error: {what} has no job runs", file=sys.stderr)
        return 1
    parent_tags = tracking.run_tags(client, parent) if parent else None
    hist = tidy_histories(results.curves(runs, HISTORY_KEYS, tracking_uri=uri), runs)
    title = f"linreg_lab report: {tracking.run_info(client, parent)[1] if parent else args.experiment}"
    header = page_header(runs, uri, tracking.ui_link(uri, exp_id), parent_tags)
    page = build(runs, hist, Path(args.out), title, header)
    if parent:
        tracking.attach_report(client, parent, Path(args.out))
        note = describe.with_report(parent_tags.get(C.NOTE, ""),
                                    f"`{C.REPORT_DIR}/{C.REPORT_HTML}` in this run's artifacts ({len(runs)} runs, made "
                                    f"{header['made']}; also at `{page.resolve()}`)")
        tracking.describe_run(client, parent, note)
    print(f"report of {len(runs)} runs ({runs_by_state(runs)}): {page}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        code = main()
    finally:
        skip_final_collections()
    sys.exit(code)
