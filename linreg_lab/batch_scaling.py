"""The batch-size study read back: steps to target at each batch size's best rate, the fitted critical batch size,
and what it found.

A sweep belongs to the study when its runs stop at their target (`stop_at_target`) over at least three batch
sizes (the `batch_size_scaling` preset). The best rate of an optimizer at a batch size is the one that reached
the target in the fewest steps (describe.fewest_steps, the rule the sweep parent's scaling metrics use); the
report's other best rate, the lowest final loss, is not this study's. S(B) = S_min (1 + B_noise / B) is fitted
to those steps (describe.critical_batch_fit). Theory's steps at a batch size are the fewest that
theory/steps_to_target predicts over the same rates (sgd and momentum on streaming Gaussian rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from linreg_lab import contract as C
from linreg_lab.describe import critical_batch_fit
from linreg_lab.tables import best_runs, largest_gap, num, truthy


def study_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The study's finished gradient runs with an integer batch size `B`."""
    if runs.empty or "stop_at_target" not in runs:
        return runs.iloc[:0]
    ok = runs[truthy(runs["stop_at_target"]) & runs["state"].isin(["finished", "diverged"])
              & runs["batch_size"].astype(str).str.isdigit()]
    ok = ok.assign(B=ok["batch_size"].astype(int))
    return ok if ok["B"].nunique() >= 3 else runs.iloc[:0]


def steps_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer and batch size: the best rate (fewest ttt/steps) and its steps (censored: no rate reached
    the target; the most steps any run had), theory's fewest steps over the same rates, the fitted S(B) and
    the noise scale at the start."""
    ok = study_runs(runs)
    if ok.empty:
        return pd.DataFrame()
    best = best_runs(ok, ["optimizer", "B"])
    rows = []
    for (opt, B), group in ok.groupby(["optimizer", "B"], sort=True):
        steps, lr = (best[(opt, B)][C.TTT_STEPS], best[(opt, B)]["lr"]) if (opt, B) in best else \
            (group["steps"].max(), np.nan)
        rows.append({"optimizer": opt, "batch_size": B, "best_lr": lr, "steps": steps, "censored": (opt, B) not in best,
                     "samples": steps * B, "theory_steps": group[C.THEORY_STEPS_TO_TARGET].min(),
                     "noise_scale": group[C.THEORY_NOISE_SCALE].mean(), "runs": len(group)})
    table = pd.DataFrame(rows)
    for _, g in table.groupby("optimizer"):
        done = g[~g["censored"]]
        s_min, b_noise = critical_batch_fit(done["batch_size"].to_numpy(), done["steps"].to_numpy())
        table.loc[g.index, "fit_min_steps"], table.loc[g.index, "fit_critical_batch"] = s_min, b_noise
        table.loc[g.index, "fit_steps"] = s_min * (1 + b_noise / g["batch_size"])
    return table


def rate_slope(g: pd.DataFrame, below: float) -> float:
    """Slope of log(best rate) on log(batch size) over the batch sizes below `below` (1: the rate grows in
    proportion); NaN with fewer than two."""
    part = g[(g["batch_size"] < below) & g["best_lr"].notna()]
    if part["batch_size"].nunique() < 2:
        return np.nan
    return float(np.polyfit(np.log(part["batch_size"]), np.log(part["best_lr"]), 1)[0])


def findings(runs: pd.DataFrame) -> list[str]:
    """Each optimizer's critical batch size and fewest steps, the noise scale against sgd's, how the best rate grows
    below the critical batch, whether momentum or Adam moves it, and theory against measurement."""
    table = steps_table(runs)
    if table.empty:
        return []
    fits = table.groupby("optimizer")[["fit_critical_batch", "fit_min_steps"]].first()
    out = []
    for opt, r in fits.iterrows():
        g = table[table["optimizer"] == opt]
        cut = int(g["censored"].sum())
        if not np.isfinite(r["fit_critical_batch"]):
            out.append(f"{opt}: S(B) = S_min (1 + B_noise / B) does not fit its fewest steps to target "
                       f"({len(g) - cut} batch sizes reached the target).")
            continue
        slope = rate_slope(g, r["fit_critical_batch"])
        out.append(f"{opt}: critical batch size {num(r['fit_critical_batch'])} (fitted B_noise), at least "
                   f"{num(r['fit_min_steps'])} steps however large the batch (S_min); below it the best rate grows "
                   f"as B^{num(slope, 2)} (1 = in proportion)" + (f"; {cut} batch sizes never reached the target"
                                                                   if cut else "") + ".")
    noise = table["noise_scale"].dropna()
    if len(noise) and "sgd" in fits.index and np.isfinite(fits.loc["sgd", "fit_critical_batch"]):
        ratio = noise.mean() / fits.loc["sgd", "fit_critical_batch"]
        out.append(f"The gradient noise scale at the start, B_simple = {num(noise.mean())} (theory/noise_scale), is "
                   f"{num(ratio)}× sgd's fitted critical batch size.")
    if "sgd" in fits.index and np.isfinite(fits.loc["sgd", "fit_critical_batch"]):
        for opt in [o for o in fits.index if o != "sgd" and np.isfinite(fits.loc[o, "fit_critical_batch"])]:
            ratio = fits.loc[opt, "fit_critical_batch"] / fits.loc["sgd", "fit_critical_batch"]
            out.append(f"{opt}'s critical batch size is {num(ratio)}× sgd's: it "
                       f"{'extends' if ratio > 1 else 'does not extend'} perfect scaling to larger batches; its "
                       f"S_min is {num(fits.loc[opt, 'fit_min_steps'] / fits.loc['sgd', 'fit_min_steps'])}× sgd's.")
    return out + agreement(table)


def agreement(table: pd.DataFrame) -> list[str]:
    """Theory's fewest steps against the measured fewest steps, for the optimizers theory covers."""
    both = table[table["theory_steps"].notna() & ~table["censored"]]
    if both.empty:
        return []
    gap, worst = largest_gap(both, "steps", "theory_steps")
    return [f"Theory's fewest steps over the same rates ({C.THEORY_STEPS_TO_TARGET}, streaming Gaussian rows) "
            f"against the measured fewest, at {len(both)} batch sizes of {', '.join(sorted(set(both['optimizer'])))}: "
            f"median gap {num(100 * gap.median(), 2)}%, largest {num(100 * gap.max(), 2)}% ({worst['optimizer']}, "
            f"B = {worst['batch_size']}: {num(worst['steps'], 6)} measured, {num(worst['theory_steps'], 6)} "
            "predicted)."]
