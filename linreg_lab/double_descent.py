"""The double-descent study read back: one row per series and number of features, and what it found.

A run belongs to the study when its data draws `data.n_features` weights (the `double_descent` preset).
Its series is what fitted it: the minimum-norm least-squares fit (closed form, no penalty), ridge at the
optimal penalty (`model.optimal_ridge`), or gradient descent from zero after `steps` steps. Bias and
variance are the decomposition given the design (est/w_bias2_cond, est/w_var_cond), the one the papers draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from linreg_lab import contract as C
from linreg_lab.tables import num

MIN_NORM, RIDGE = "minimum-norm least squares", "ridge at the optimal penalty"
FAR = 8  # |p - n| from which the squared error's spread is moderate (its variance is finite for |p - n| >= 4)
COLUMNS = {  # table column -> the metric it averages over the runs of a series and size
    "test_mse": C.PRED_TEST_MSE, "w_mse": C.EST_W_MSE, "bias2_cond": C.EST_W_BIAS2_COND,
    "var_cond": C.EST_W_VAR_COND, "noise_var": C.PRED_NOISE, "theory_w_mse": C.THEORY_GAUSS_W_MSE,
    "theory_bias2_cond": C.THEORY_GAUSS_W_BIAS2_COND, "theory_var_cond": C.THEORY_GAUSS_W_VAR_COND,
    "theory_ridge_w_mse": C.THEORY_GAUSS_RIDGE_W_MSE, "ridge_weight_decay": C.THEORY_GAUSS_RIDGE_WEIGHT_DECAY,
}


def series_of(row: pd.Series) -> str:
    """Which of the study's series fitted this run."""
    if row.get("model") == "closed_form":
        return RIDGE if row.get("optimal_ridge") is True else MIN_NORM
    return f"gradient descent from 0, {int(row['steps'])} steps"


def curve_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per series and p: p/n, the measured test MSE, ||w_hat - w||^2 and its parts given the design, and the
    isotropic Gaussian design's exact values (theory_*; the ridge one is the Marchenko-Pastur limit)."""
    if runs.empty or "n_features" not in runs:
        return pd.DataFrame()
    ok = runs[(runs["state"] == "finished") & runs["n_features"].notna() & runs[C.EST_W_MSE].notna()]
    if ok.empty or ok["n_features"].nunique() < 2:
        return pd.DataFrame()
    ok = ok.assign(series=ok.apply(series_of, axis=1), p=ok["n_features"].astype(int), n=ok["n_train"].astype(int))
    ok = ok.assign(**{col: ok[metric] if metric in ok else np.nan for col, metric in COLUMNS.items()})
    table = ok.groupby(["series", "p", "n"], as_index=False)[list(COLUMNS)].mean()
    table.insert(3, "p_over_n", table["p"] / table["n"])
    table["theory_test_mse"] = table["noise_var"] + table["theory_w_mse"].fillna(table["theory_ridge_w_mse"])
    return table.sort_values(["series", "p"]).reset_index(drop=True)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3g}×" if np.isfinite(a) and np.isfinite(b) and b > 0 else "—"


def findings(runs: pd.DataFrame) -> list[str]:
    """Where the minimum-norm fit's error peaks and how high, the over- against the under-parameterized fit,
    what optimal ridge and early stopping do to the peak, and measurement against the exact expectation."""
    table = curve_table(runs)
    if table.empty or MIN_NORM not in set(table["series"]):
        return []
    mn = table[table["series"] == MIN_NORM].set_index("p")
    peak = mn.loc[mn["test_mse"].idxmax()]
    half = mn.loc[(mn["p_over_n"] - 0.5).abs().idxmin()]
    out = [f"Minimum-norm least squares: the test MSE peaks at p/n = {num(peak['p_over_n'])} (p = {peak.name}, "
           f"n = {peak['n']}) at {num(peak['test_mse'])}, {ratio(peak['test_mse'], half['test_mse'])} its value "
           f"at p/n = {num(half['p_over_n'])} ({num(half['test_mse'])})."]
    under, last = mn[mn["p_over_n"] < 1], mn.iloc[-1]
    if len(under) and last["p_over_n"] > 1:
        best = under.loc[under["test_mse"].idxmin()]
        side = "below" if last["test_mse"] < best["test_mse"] else "above"
        out.append(f"At the largest p/n, {num(last['p_over_n'])}, its test MSE is {num(last['test_mse'])}: "
                   f"{ratio(last['test_mse'], best['test_mse'])} the best under-parameterized one "
                   f"({num(best['test_mse'])} at p/n = {num(best['p_over_n'])}), {side} it.")
    for series in [s for s in table["series"].unique() if s != MIN_NORM]:
        rows = table[table["series"] == series]
        top = rows.loc[rows["test_mse"].idxmax()]
        out.append(f"{series[0].upper() + series[1:]}: its highest test MSE is {num(top['test_mse'])} (p/n = "
                   f"{num(top['p_over_n'])}), {ratio(top['test_mse'], peak['test_mse'])} the minimum-norm peak.")
    return out + agreement(mn)


def agreement(mn: pd.DataFrame) -> list[str]:
    """The minimum-norm fit's measured E||w_hat - w||^2 against the exact expectation, apart where |p - n| >= 8
    and near the threshold, where the squared error is heavy-tailed (infinite variance for |p - n| <= 3)."""
    known = mn[mn["theory_w_mse"].notna()]
    if known.empty:
        return []
    gap = (known["w_mse"] / known["theory_w_mse"] - 1).abs()
    far = (known.index.to_series() - known["n"]).abs() >= FAR
    out = []
    for part, where in ((gap[far], f"|p − n| ≥ {FAR}"), (gap[~far], f"|p − n| < {FAR}")):
        if len(part):
            worst = part.idxmax()
            out.append(f"Minimum-norm fit, measured E‖ŵ − w‖² against the exact expectation at the {len(part)} sizes "
                       f"with {where}: within {100 * part.max():.3g}% (largest gap at p = {worst}: "
                       f"{num(known.loc[worst, 'w_mse'])} measured, {num(known.loc[worst, 'theory_w_mse'])} expected).")
    return out
