"""The report's opening sentences, each computed from the tables below it (linreg_lab.tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from linreg_lab import batch_scaling, conditioning, double_descent
from linreg_lab import contract as C
from linreg_lab.tables import best_lr_table, num, reference_slice, varied_knobs


def with_se(value: float, se: float) -> str:
    return num(value) if se is None or not np.isfinite(se) else f"{num(value)} ± {num(se, 2)}"


def best_rates(best: pd.DataFrame) -> list[str]:
    """Each optimizer at its best learning rate: loss, time to target, spread."""
    out = []
    for _, r in best.iterrows():
        if r["ttt_censored"] > 0:
            target = f"it did not reach the target loss within its {num(r['ttt_steps'])} steps"
        else:
            target = f"it reached the target loss in {num(r['ttt_steps'])} steps ({num(r['ttt_seconds'], 2)} s)"
        if np.isfinite(r["w_sd_replicates"]):
            spread = (f"ŵ varies by {num(r['w_sd_replicates'], 2)} (sd) across its {num(r['replicates'])} replicates,"
                      f" MSE of ŵ {with_se(r['est_w_mse'], r['est_w_mse_se'])}")
        else:
            spread = "one replicate: no spread measured"
        out.append(f"{r['optimizer']} is best at lr {num(r['best_lr'])} (the lowest final loss): final training loss "
                   f"{num(r['final_loss'])}; "
                   f"{target}; {spread}.")
    return out


def lowest_mse(runs: pd.DataFrame) -> list[str]:
    """Where the MSE of w is lowest, and where theory puts it; the optimum of each knob swept."""
    ok = runs[(runs["state"] == "finished") & runs[C.EST_W_MSE].notna()]
    if len(ok) < 2:
        return []
    low = ok.loc[ok[C.EST_W_MSE].idxmin()]
    text = (f"The lowest MSE of ŵ, {with_se(low[C.EST_W_MSE], low[C.se(C.EST_W_MSE)])}, is run {low['run_name']}")
    known = ok[ok[C.theory_of(C.EST_W_MSE)].notna()]
    if len(known) >= 2:
        pick = known.loc[known[C.theory_of(C.EST_W_MSE)].idxmin()]
        kind = pick["tags.theory"]
        se = C.se(C.EST_W_MSE)
        close = abs(pick[C.EST_W_MSE] - low[C.EST_W_MSE]) <= 2 * np.hypot(pick[se], low[se])
        if pick["run_id"] == low["run_id"]:
            text += f"; theory ({kind}) puts the minimum at the same run"
        else:
            text += (f"; theory ({kind}) puts it at run {pick['run_name']}, where {num(pick[C.EST_W_MSE])} was "
                     f"measured{': the same within two standard errors' if close else ''}")
        if len(known) < len(ok):
            text += f" (theory covers {len(known)} of the {len(ok)} runs)"
    out, knobs = [text + "."], varied_knobs(ok)
    for knob, label, theory_col in (("weight_decay", "weight decay", C.THEORY_BEST_WEIGHT_DECAY),
                                    ("steps", "budget", C.THEORY_BEST_STEPS)):
        if knob not in knobs:
            continue
        part, chosen = reference_slice(ok, knob, knobs)
        means = part.groupby(knob)[C.PRED_TEST_MSE].mean().dropna()
        if len(means) < 2:
            continue
        at = "; ".join(f"{k} = {v if isinstance(v, str) else num(v, 6)}" for k, v in chosen.items())
        sentence = (f"Against {label}{f' ({at})' if at else ''}, the test MSE is lowest at {num(means.idxmin(), 6)}: "
                    f"{num(means.min())}, against {num(means.iloc[0])} and {num(means.iloc[-1])} at the ends")
        theory = part[theory_col].median()
        if np.isfinite(theory):
            sentence += f"; theory's optimum is {num(theory)}"
        out.append(sentence + ".")
    return out


def divergence(runs: pd.DataFrame) -> list[str]:
    """Which runs diverged, and whether the 2/lambda_max bound said they would."""
    div = runs[runs["state"] == "diverged"]
    stability = runs["tags.stability"].fillna("n/a")
    if len(div):
        predicted = int((div["tags.stability"] == "diverged_as_predicted").sum())
        covered = int(div["tags.stability"].isin(["diverged_as_predicted", "diverged_below_bound"]).sum())
        names = ", ".join(div["run_name"].astype(str).head(5)) + (" ..." if len(div) > 5 else "")
        text = (f"{len(div)} of {len(runs)} runs diverged ({names}); the 2/λmax bound predicted {predicted} of the "
                f"{covered} it covers (SGD and momentum)")
        surprised = int((stability == "stable_above_bound").sum())
        if surprised:
            text += f"; {surprised} runs above the bound stayed finite"
        return [text + "."]
    gd = runs[stability.isin(["stable_as_predicted", "stable_above_bound"])]
    if gd.empty:
        return ["No run diverged."]
    ratio = (gd["lr"] / gd[C.THEORY_LR_MAX]).max()
    return [f"No run diverged; the largest SGD or momentum rate sat at {num(ratio, 2)} × the 2/λmax bound."]


def error_split(best: pd.DataFrame) -> list[str]:
    """How much of the error of w is the optimizer's, how much the data's."""
    out = []
    for _, r in best.iterrows():
        opt, stat = r["est_w_opt_mse"], r["est_w_stat_mse"]
        if not (np.isfinite(opt) and np.isfinite(stat)) or opt + stat <= 0:
            continue
        share = opt / (opt + stat)
        whose = "the optimizer's" if share > 0.5 else "the data's"
        out.append(f"{r['optimizer']} at lr {num(r['best_lr'])}: ŵ is {num(opt)} (squared) from its own data's "
                   f"least-squares fit and that fit {num(stat)} from the truth, so most of the error is {whose} "
                   f"({100 * max(share, 1 - share):.0f}%).")
    return out


def findings(runs: pd.DataFrame) -> list[str]:
    """Short sentences, best-first: each optimizer at its best rate, where the MSE is lowest (and whether theory
    agrees), divergence against the bound, and the optimizer's share of the error."""
    if runs.empty:
        return []
    study = double_descent.findings(runs)
    if study:  # the double-descent study: no optimizer is tuned, its series are the story
        return study + divergence(runs)
    study = conditioning.findings(runs) or batch_scaling.findings(runs)
    if study:  # the conditioning or batch-size study: steps to target is the story
        return study + divergence(runs)
    best = best_lr_table(runs)
    out = best_rates(best) if len(best) else []
    out += lowest_mse(runs) + divergence(runs) + (error_split(best) if len(best) else [])
    return out

