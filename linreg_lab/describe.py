"""The description (markdown) of a sweep's parent run, shown on its page in the MLflow UI: the command,
its jobs by status, the best run per optimizer and where the report is.

Rows are the flat dicts of tracking.child_runs (`params.*`, `metrics.*`, `tags.*`, run_name, status).
"""

from __future__ import annotations

import math
from collections import Counter

from linreg_lab.console import table

REPORT_LABEL = "**Report:**"


def optimizer_of(row: dict) -> str:
    """The optimizer's name; a solver (closed_form, grid) by its model's name."""
    model = row.get("params.model.name")
    return model if model in ("closed_form", "grid") else str(row.get("params.optimizer.name", "?"))


def best_runs(rows: list[dict]) -> list[dict]:
    """Per optimizer, the finished run that did not diverge with the lowest final training loss (the
    report's criterion for an optimizer's best learning rate), in order of optimizer name."""
    best: dict[str, dict] = {}
    for row in rows:
        loss = row.get("metrics.train/full_loss")
        if row["status"] != "FINISHED" or row.get("tags.outcome") != "completed" or loss is None:
            continue
        if not math.isfinite(float(loss)):
            continue
        name = optimizer_of(row)
        if name not in best or float(loss) < float(best[name]["metrics.train/full_loss"]):
            best[name] = row
    return [best[k] for k in sorted(best)]


def status_counts(rows: list[dict]) -> str:
    """'3 FINISHED, 1 FAILED' (diverged runs counted apart from the finished ones)."""
    counts = Counter("DIVERGED" if r["status"] == "FINISHED" and r.get("tags.outcome") == "diverged"
                     else r["status"] for r in rows)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"


def sweep_note(command: str, rows: list[dict], expected: str, report: str) -> str:
    """The parent run's description once the sweep is over."""
    best = [[optimizer_of(r), r["run_name"], r.get("params.lr", "—"), r.get("metrics.train/full_loss"),
             r.get("metrics.w_error/l2")] for r in best_runs(rows)]
    lines = [f"**Command:** `{command}`", "",
             f"**Jobs:** {len(rows)} of {expected} reached the store: {status_counts(rows)}", ""]
    if best:
        lines += ["**Best run per optimizer** (lowest final training loss, among runs that finished and did not "
                  "diverge):", "",
                  table(best, ["optimizer", "run", "lr", "loss (train set)", "‖w − w_true‖"], markdown=True), ""]
    return "\n".join(lines + [f"{REPORT_LABEL} {report}"])


def with_report(note: str, report: str) -> str:
    """The description with its report line replaced (or added)."""
    kept = note.split(REPORT_LABEL)[0].rstrip("\n")
    return f"{kept}\n\n{REPORT_LABEL} {report}" if kept else f"{REPORT_LABEL} {report}"
