"""The description (markdown) of a sweep's parent run, shown on its page in the MLflow UI: the command,
its jobs by status, the best run per optimizer and where the report is.

Rows are the flat dicts of tracking.child_runs (`params.*`, `metrics.*`, `tags.*`, run_name, status).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable

import numpy as np
from tabulate import tabulate

from linreg_lab.contract import (
    FULL_LOSS,
    OUTCOME,
    OVERRIDES,
    SCALING_CRITICAL_BATCH,
    SCALING_MIN_STEPS,
    SOLVER_MODELS,
    TTT_CENSORED,
    TTT_STEPS,
    W_ERROR,
)

REPORT_LABEL = "**Report:**"


def optimizer_of(row: dict) -> str:
    """The optimizer's name; a solver (closed_form, grid) by its model's name."""
    model = row.get("params.model.name")
    return model if model in SOLVER_MODELS else str(row.get("params.optimizer.name", "?"))


def best_runs(rows: list[dict]) -> list[dict]:
    """Per optimizer, the single run with the lowest final training loss among those that finished and did
    not diverge, in order of optimizer name. This is a run, not a rate: the report's best rate
    (tables.best_lr_table) is the one with the lowest loss averaged over the runs at that rate."""
    best: dict[str, dict] = {}
    loss_key = f"metrics.{FULL_LOSS}"
    for row in rows:
        loss = row.get(loss_key)
        if row["status"] != "FINISHED" or row.get(f"tags.{OUTCOME}") != "completed" or loss is None:
            continue
        if not math.isfinite(float(loss)):
            continue
        name = optimizer_of(row)
        if name not in best or float(loss) < float(best[name][loss_key]):
            best[name] = row
    return [best[k] for k in sorted(best)]


def fewest_steps(runs: list[tuple[Hashable, float, float, bool]]) -> dict[Hashable, int]:
    """The studies' best rate, by the fewest steps to target: from (group, ttt/steps, lr, reached) per run, each
    group's (an optimizer at a batch size, a kappa, ...) quickest run that reached the target, as its index in
    `runs` (ties: the smaller rate)."""
    best: dict[Hashable, int] = {}
    for i, (key, steps, lr, reached) in enumerate(runs):
        if not reached or not np.isfinite(steps):
            continue
        if key not in best or (steps, lr) < runs[best[key]][1:3]:
            best[key] = i
    return best


def critical_batch_fit(batch: np.ndarray, steps: np.ndarray) -> tuple[float, float]:
    """(S_min, B_noise) of S(B) = S_min (1 + B_noise / B) (McCandlish et al. 2018, "An Empirical Model of
    Large-Batch Training", eq. 2.11), least squares in relative error: S is linear in 1/B, each point weighted by
    1/S. NaN where fewer than 3 batch sizes, or the fit is not positive (no scaling law of that form)."""
    batch, steps = np.asarray(batch, dtype=np.float64), np.asarray(steps, dtype=np.float64)
    if len(np.unique(batch)) < 3:
        return np.nan, np.nan
    design = np.stack([np.ones_like(batch), 1 / batch], 1) / steps[:, None]
    (s_min, slope), *_ = np.linalg.lstsq(design, np.ones_like(steps), rcond=None)
    if s_min <= 0 or slope < 0:
        return np.nan, np.nan
    return float(s_min), float(slope / s_min)


def scaling_metrics(rows: list[dict]) -> dict[str, float]:
    """The sweep parent's scaling/<optimizer>/critical_batch and min_steps: S(B) fitted to each optimizer's fewest
    steps to target at each batch size (finished runs that met the target); none unless >= 3 batch sizes."""
    runs = []
    for r in rows:
        batch, steps = str(r.get("params.batch_size", "")), r.get(f"metrics.{TTT_STEPS}")
        if r["status"] != "FINISHED" or r.get(f"tags.{OUTCOME}") != "completed" or not batch.isdigit() or steps is None:
            continue
        runs.append(((optimizer_of(r), int(batch)), float(steps), float(r.get("params.lr", "nan")),
                     r.get(f"metrics.{TTT_CENSORED}") == 0))
    best = {key: runs[i][1] for key, i in fewest_steps(runs).items()}  # (optimizer, batch) -> steps
    out = {}
    for opt in sorted({o for o, _ in best}):
        points = sorted((b, s) for (o, b), s in best.items() if o == opt)
        s_min, b_noise = critical_batch_fit(np.array([b for b, _ in points]), np.array([s for _, s in points]))
        if np.isfinite(s_min):
            out[SCALING_CRITICAL_BATCH.format(optimizer=opt)] = b_noise
            out[SCALING_MIN_STEPS.format(optimizer=opt)] = s_min
    return out


def winner(rows: list[dict], objective: str, maximize: bool = False) -> dict | None:
    """The finished run with the best finite objective (the lowest, or the highest when the sweeper maximizes)."""
    key, best = f"metrics.{objective}", None
    for row in rows:
        value = row.get(key)
        if row["status"] != "FINISHED" or value is None or not math.isfinite(float(value)):
            continue
        if best is None or (float(value) > float(best[key]) if maximize else float(value) < float(best[key])):
            best = row
    return best


def winner_line(row: dict, objective: str, maximize: bool, markdown: bool = False) -> str:
    """'best by w_error/l2 (minimized): run NAME (ID), 0.0123, overrides lr=0.1 optimizer=sgd'."""
    quote = "`" if markdown else ""
    label = "**Best by objective**" if markdown else "best by objective"
    return (f"{label} {quote}{objective}{quote} ({'maximized' if maximize else 'minimized'}): run "
            f"{row['run_name']} ({row['run_id']}), {float(row[f'metrics.{objective}']):.6g}, overrides "
            f"{quote}{row.get(f'tags.{OVERRIDES}', '')}{quote}")


def status_counts(rows: list[dict]) -> str:
    """'3 FINISHED, 1 FAILED' (diverged runs counted apart from the finished ones)."""
    counts = Counter("DIVERGED" if r["status"] == "FINISHED" and r.get(f"tags.{OUTCOME}") == "diverged"
                     else r["status"] for r in rows)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"


def sweep_note(command: str, rows: list[dict], expected: str, report: str, winner: str | None = None) -> str:
    """The parent run's description once the sweep is over; `winner`: winner_line's markdown, before the report."""
    best = [[optimizer_of(r), r["run_name"], r.get("params.lr", "—"), r.get(f"metrics.{FULL_LOSS}"),
             r.get(f"metrics.{W_ERROR}")] for r in best_runs(rows)]
    lines = [f"**Command:** `{command}`", "",
             f"**Jobs:** {len(rows)} of {expected} reached the store: {status_counts(rows)}", ""]
    if best:
        lines += ["**Best run per optimizer** (the one run with the lowest final training loss, among runs that "
                  "finished and did not diverge; the report's best rate averages over the runs at a rate):", "",
                  table(best, ["optimizer", "run", "lr", "loss (train set)", "‖w − w_true‖"], markdown=True), ""]
    if winner:
        lines += [winner, ""]
    return "\n".join(lines + [f"{REPORT_LABEL} {report}"])


def with_report(note: str, report: str) -> str:
    """The description with its report line replaced (or added)."""
    kept = note.split(REPORT_LABEL)[0].rstrip("\n")
    return f"{kept}\n\n{REPORT_LABEL} {report}" if kept else f"{REPORT_LABEL} {report}"


def table(rows: list[list[object]], headers: list[str], markdown: bool = False) -> str:
    """Rows as an aligned table, numbers to 4 significant digits and right-aligned; `markdown`: pipes."""
    rows = [[None if isinstance(v, float) and v != v else v for v in row] for row in rows]  # NaN: "—"
    return tabulate(rows, headers=headers, tablefmt="github" if markdown else "simple", floatfmt=".4g",
                    missingval="—")
