"""The conditioning study read back: steps to target at each optimizer's best rate against kappa, and what it found.

A run belongs to the study when its data has `data.spectrum=condition` and the sweep varies
`data.condition_number` (the `conditioning` preset). An optimizer's best rate at a kappa and basis is the one
that reached the target (ttt/steps) in the fewest steps, theory-tuned runs (theory_tuned) included; where no
rate reached it, the optimizer is censored there at its budget. Theory's lines are the tuned runs' own
theory/steps_to_target: gradient descent at 2/(L + mu) and Polyak's heavy ball.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from linreg_lab import contract as C
from linreg_lab.tables import best_runs, largest_gap, num, truthy

THEORY_SERIES = {"sgd": "theory: gradient descent at 2/(L+μ)", "momentum": "theory: Polyak's heavy ball"}


def study_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The study's finished (or diverged) gradient runs, with `kappa` (the configured condition number)."""
    if runs.empty or "condition_number" not in runs or "spectrum" not in runs:
        return runs.iloc[:0]
    ok = runs[(runs["spectrum"] == "condition") & runs["state"].isin(["finished", "diverged"])
              & ~runs["model"].isin(["closed_form", "grid"])]
    ok = ok.assign(kappa=pd.to_numeric(ok["condition_number"], errors="coerce"),
                   tuned=truthy(ok["theory_tuned"]) if "theory_tuned" in ok else False)
    return ok if ok["kappa"].nunique() >= 2 else runs.iloc[:0]


def steps_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per basis, kappa and optimizer: the best rate (fewest ttt/steps), its steps and whether it is censored
    (no rate reached the target: the budget), the theory-tuned run's measured and predicted steps (sgd:
    2/(L+mu), momentum: Polyak), and the training Hessian's measured condition number."""
    ok = study_runs(runs)
    if ok.empty:
        return pd.DataFrame()
    quickest = best_runs(ok, ["basis", "kappa", "optimizer"])
    rows = []
    for (basis, kappa, opt), group in ok.groupby(["basis", "kappa", "optimizer"], sort=True):
        best = quickest.get((basis, kappa, opt))
        tuned = group[group["tuned"]]
        rows.append({
            "basis": basis, "kappa": kappa, "optimizer": opt,
            "best_lr": best["lr"] if best is not None else np.nan,
            "momentum": float(best["momentum"]) if best is not None and opt in C.GD_FAMILY else np.nan,
            "steps": best[C.TTT_STEPS] if best is not None else group["steps"].max(),
            "censored": best is None,
            "tuned_steps": tuned[C.TTT_STEPS].mean() if len(tuned) else np.nan,
            "theory_steps": tuned[C.THEORY_STEPS_TO_TARGET].mean() if len(tuned) else np.nan,
            "condition": group[C.THEORY_CONDITION].mean(), "runs": len(group),
        })
    return pd.DataFrame(rows)


def slope_text(value: float) -> str:
    """A slope to two decimals (0.87, -0.04), a dash where there is none."""
    return "—" if value is None or not np.isfinite(value) else f"{value:.2f}"


def slope(kappa: pd.Series, steps: pd.Series) -> float:
    """Least-squares slope of log(steps) on log(kappa), over at least two kappas; NaN otherwise."""
    keep = np.isfinite(steps) & (steps > 0)
    x, y = np.log(kappa[keep].astype(float)), np.log(steps[keep].astype(float))
    return float(np.polyfit(x, y, 1)[0]) if x.nunique() >= 2 else np.nan


def slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Per basis and series: the fitted slope of steps against kappa (log-log), censored points left out;
    theory's series fitted to the tuned runs' predicted steps."""
    rows = []
    for (basis, opt), g in table.groupby(["basis", "optimizer"], sort=False):
        done = g[~g["censored"]]
        rows.append({"basis": basis, "series": opt, "slope": slope(done["kappa"], done["steps"]),
                     "censored": int(g["censored"].sum())})
        if opt in THEORY_SERIES and g["theory_steps"].notna().any():
            rows.append({"basis": basis, "series": THEORY_SERIES[opt],
                         "slope": slope(g["kappa"], g["theory_steps"]), "censored": 0})
    return pd.DataFrame(rows)


def findings(runs: pd.DataFrame) -> list[str]:
    """Each optimizer's slope per basis; tuned heavy ball against tuned gradient descent at the largest kappa;
    whether RMSprop's and Adam's gain on axis-aligned ill-conditioning survives rotation; theory against the
    tuned runs' measurement."""
    table = steps_table(runs)
    if table.empty:
        return []
    fits, out = slopes(table), []
    for basis, g in fits.groupby("basis", sort=False):
        parts = [f"{r['series']} {slope_text(r['slope'])}" + (f" ({r['censored']} censored κ left out)" if r["censored"]
                                                          else "") for _, r in g.iterrows()]
        out.append(f"Basis {basis}: steps to target at each optimizer's best rate grow as κ^slope, slopes "
                   + "; ".join(parts) + ".")
    top = table["kappa"].max()
    for basis, g in table[table["kappa"] == top].groupby("basis", sort=False):
        by = g.set_index("optimizer")
        if {"sgd", "momentum"} <= set(by.index) and by[["tuned_steps"]].loc[["sgd", "momentum"]].notna().all().all():
            gd, hb = by.loc["sgd"], by.loc["momentum"]
            out.append(f"At κ = {num(top, 6)} ({basis}), Polyak's tuned heavy ball reached the target in "
                       f"{num(hb['tuned_steps'], 6)} steps and gradient descent at 2/(L+μ) in "
                       f"{num(gd['tuned_steps'], 6)}: "
                       f"{num(gd['tuned_steps'] / hb['tuned_steps'])}× fewer (theory "
                       f"{num(gd['theory_steps'] / hb['theory_steps'])}×; √κ = {num(np.sqrt(top))}).")
    out += rotation(table, top)
    return out + agreement(table)


def rotation(table: pd.DataFrame, kappa: float) -> list[str]:
    """RMSprop's and Adam's advantage over sgd (sgd's best steps / theirs) at `kappa`, axes against rotated."""
    at = table[table["kappa"] == kappa].set_index(["optimizer", "basis"])
    out = []
    for opt in ("rmsprop", "adam"):
        keys = [(o, b) for o in (opt, "sgd") for b in ("axes", "rotated")]
        if not all(k in at.index for k in keys):
            continue
        gain = {b: at.loc[("sgd", b), "steps"] / at.loc[(opt, b), "steps"] for b in ("axes", "rotated")}
        mark = {b: " (censored)" if at.loc[(opt, b), "censored"] else "" for b in ("axes", "rotated")}
        kept = gain["rotated"] >= 0.5 * gain["axes"]
        out.append(f"{opt} at κ = {num(kappa, 6)}: {num(at.loc[(opt, 'axes'), 'steps'], 6)} steps{mark['axes']} "
                   f"with the ill-conditioning along the axes, {num(at.loc[(opt, 'rotated'), 'steps'], 6)}"
                   f"{mark['rotated']} "
                   f"rotated; sgd's steps over its: {num(gain['axes'])}× on axes, {num(gain['rotated'])}× rotated: "
                   f"the gain {'survives' if kept else 'does not survive'} rotation (kept if at least half remains).")
    return out


def agreement(table: pd.DataFrame) -> list[str]:
    """The tuned runs' measured ttt/steps against theory/steps_to_target."""
    both = table[table["tuned_steps"].notna() & table["theory_steps"].notna()]
    if both.empty:
        return []
    gap, worst = largest_gap(both, "tuned_steps", "theory_steps")
    return [f"{C.THEORY_STEPS_TO_TARGET} against the measured {C.TTT_STEPS} of the {len(both)} theory-tuned runs: "
            f"within "
            f"{num(100 * gap.max(), 2)}% (largest gap: {worst['optimizer']}, κ = {num(worst['kappa'], 6)}, "
            f"{worst['basis']}: {num(worst['tuned_steps'], 6)} measured, {num(worst['theory_steps'], 6)} predicted)."]
