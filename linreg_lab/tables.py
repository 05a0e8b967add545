"""Tidy pandas tables of a sweep's runs: what the report's figures, tables and findings are computed from."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from linreg_lab import contract as C
from linreg_lab import results
from linreg_lab.describe import fewest_steps

ALIASES = {  # config column (results.runs) -> the report's name for it
    "optimizer.name": "optimizer", "optimizer.weight_decay": "weight_decay", "model.name": "model",
    "experiment": "preset", "model.weight_decay": "model_weight_decay", "data.true_w": "true_w",
    "data.true_b": "true_b", "data.n_train": "n_train", "data.sampling": "sampling", "data.n_features": "n_features",
    "model.optimal_ridge": "optimal_ridge", "data.condition_number": "condition_number", "data.basis": "basis",
    "data.spectrum": "spectrum", "optimizer.momentum": "momentum",
}
SETTINGS = ["optimizer", "lr", "batch_size", "noise", "weight_decay", "steps", "replicates", "seed", "model",
            "preset", "model_weight_decay", "true_w", "true_b", "n_train", "sampling"]
NUMERIC = ["lr", "noise", "weight_decay", "steps", "replicates", "seed", "model_weight_decay", "true_b", "n_train"]
HISTORY_KEYS = [C.TRAIN_LOSS, C.TRAIN_LOSS_P10, C.TRAIN_LOSS_P90, C.FULL_LOSS]
DECOMPOSED = [C.EST_W_BIAS2, C.EST_W_VAR, C.EST_W_MSE, C.EST_B_BIAS2, C.EST_B_VAR, C.EST_B_MSE,
              C.PRED_BIAS2, C.PRED_VAR, C.PRED_TEST_MSE]  # each with a _se beside it, and theory/<name>
METRICS = [C.FULL_LOSS, C.W_ERROR, C.B_ERROR, "b", C.OLS_LOSS, C.TIME_TOTAL, C.TIME_TRAIN,
           C.THEORY_LR_MAX, C.THEORY_W_VAR, C.EST_REPLICATES, C.EST_W_OPT_MSE, C.EST_W_STAT_MSE,
           C.TTT_STEPS, C.TTT_SECONDS, C.TTT_CENSORED, C.DIVERGED_STEP, C.DIVERGED_FRACTION,
           C.THEORY_BEST_WEIGHT_DECAY, C.THEORY_BEST_STEPS, C.THEORY_W_VAR_SGD, C.THEORY_CONDITION,
           C.THEORY_STEPS_TO_TARGET, C.THEORY_NOISE_SCALE,
           *DECOMPOSED, *map(C.se, DECOMPOSED), *map(C.theory_of, DECOMPOSED)]
# always present as columns (NaN where a run has none), so figures can rely on them
TAGS = ["outcome", "tags.overrides", "tags.error", "tags.stability", "tags.theory"]
REPEAT_KEYS = ("seed", "data_seed", "init_seed", "order_seed", "resume")  # config keys that are not settings


def truthy(values: pd.Series) -> pd.Series:
    """A boolean config column as results.runs gives it (True, or the text 'true'), as booleans."""
    return values.astype(str).str.lower() == "true"


def best_runs(runs: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.Series]:
    """Per group of `keys`, the run with the fewest steps to target among those that finished and reached it
    (describe.fewest_steps: the studies' best rate, the rule the sweep parent's scaling metrics use)."""
    reached = (runs["state"] == "finished") & (runs[C.TTT_CENSORED] == 0)
    groups = list(zip(*(runs[k] for k in keys)))
    picked = fewest_steps(list(zip(groups, runs[C.TTT_STEPS], runs["lr"], reached)))
    return {key: runs.iloc[i] for key, i in picked.items()}


def largest_gap(table: pd.DataFrame, measured: str, predicted: str) -> tuple[pd.Series, pd.Series]:
    """|measured / predicted - 1| per row of `table`, and the row where it is largest."""
    gap = (table[measured] / table[predicted] - 1).abs()
    return gap, table.loc[gap.idxmax()]


def num(value: float, digits: int = 3) -> str:
    """A number to `digits` significant digits, or a dash where there is none."""
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def state(row: pd.Series) -> str:
    """finished, diverged, failed, killed or running (a RUNNING run is never counted as finished)."""
    status = row["status"]
    if status == "FINISHED":
        return "diverged" if row.get("outcome") == "diverged" else "finished"
    return {"FAILED": "failed", "KILLED": "killed"}.get(status, "running")


def tidy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """results.runs' frame with what the report adds: short names for the settings it plots (ALIASES),
    every column it relies on (NaN where no run has it), a `state` column and `settings` (the config
    less its seeds, as one string: runs that differ only in seeds share it)."""
    if runs.empty:
        return runs
    config = [c for c in results.config_columns(runs) if c not in REPEAT_KEYS]
    df = runs.copy()
    df["settings"] = ["|".join(map(repr, values)) for values in zip(*(df[c] for c in config))] if config else ""
    df = df.assign(**{alias: df[name] for name, alias in ALIASES.items() if name in df})
    df["state"] = df.apply(state, axis=1)
    missing = [c for c in SETTINGS + METRICS + TAGS if c not in df]
    df = pd.concat([df, pd.DataFrame(np.nan, index=df.index, columns=missing)], axis=1)
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["batch_size"] = df["batch_size"].astype(str)
    df["preset"] = df["preset"].where(df["preset"].notna() & ~df["preset"].isin(["None", "null", ""]))
    df["weight_decay"] = df["weight_decay"].fillna(df["model_weight_decay"])
    df["optimizer"] = df["optimizer"].where(~df["model"].isin(["closed_form", "grid"]), df["model"])  # solvers
    df["tags.theory"] = df["tags.theory"].astype(object).fillna("none")  # all-NaN (float) when no run has it
    return df.sort_values("start_time").reset_index(drop=True).copy()  # one block again, after the column edits


def tidy_histories(points: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """results.curves' long frame (run_id, metric, step, value), non-numbers dropped, with the run's settings."""
    df = points[np.isfinite(points["value"])]
    keep = ["run_id", "run_name", "optimizer", "lr", "batch_size", "noise", "weight_decay", "state", C.OLS_LOSS]
    return df.merge(runs[[c for c in keep if c in runs]], on="run_id")


def mean_se(se: pd.Series) -> float:
    """Standard error of the mean of k independent estimates with these standard errors."""
    se = se.dropna()
    return float(np.sqrt((se**2).sum()) / len(se)) if len(se) else np.nan


def best_lr_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer: its best learning rate (lowest mean final training loss over runs that did not
    diverge, the other knobs the sweep varied at their reference values: see reference_slice), with final
    loss, w error and its spread, bias^2, variance and mse of w with their standard errors (NaN where runs
    have one replicate: no spread from one sample), and time to target at that rate."""
    ok = runs[(runs["state"] == "finished") & runs[C.FULL_LOSS].notna()] if len(runs) else runs
    if ok.empty or "optimizer" not in ok:
        return pd.DataFrame()
    ok, _ = reference_slice(ok, "lr", [k for k in varied_knobs(ok) if k != "lr"])
    by = ok.groupby(["optimizer", "lr"], dropna=False)
    agg = by.agg(final_loss=(C.FULL_LOSS, "mean"), runs=("run_id", "count"),
                 replicates=(C.EST_REPLICATES, "mean"),
                 w_error=(C.W_ERROR, "mean"), w_error_sd=(C.W_ERROR, "std"),
                 **{c.replace("/", "_"): (c, "mean") for c in (C.EST_W_BIAS2, C.EST_W_VAR, C.EST_W_MSE,
                                                              C.EST_W_OPT_MSE, C.EST_W_STAT_MSE, C.TTT_STEPS,
                                                              C.TTT_SECONDS, C.TTT_CENSORED)})
    for col in (C.EST_W_BIAS2, C.EST_W_VAR, C.EST_W_MSE):
        agg[col.replace("/", "_") + "_se"] = by[col + "_se"].agg(mean_se)
    agg["w_sd_replicates"] = np.sqrt(agg["est_w_var"].clip(lower=0))  # spread of w_hat across replicates
    best = agg.reset_index().sort_values("final_loss").groupby("optimizer", as_index=False).first()
    return best.rename(columns={"lr": "best_lr"}).sort_values("final_loss").reset_index(drop=True)


def tutorial_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The tutorials' own numbers for preset runs: learned w and b, and true minus learned."""
    tutorial = runs[runs["preset"].notna() & (runs["state"] != "running")] if "preset" in runs else runs.iloc[:0]
    rows = []
    for _, r in tutorial.iterrows():
        row = {"run": r["run_name"], "preset": r["preset"], "state": r["state"]}
        for i in range(8):
            w_i, error_i = C.W_I.format(i=i), C.W_ERROR_I.format(i=i)
            if w_i in r and pd.notna(r[w_i]):
                row[f"w{i}"], row[f"true-w{i}"] = r[w_i], -r[error_i]
        row["b"], row["true-b"] = r.get("b"), -r.get(C.B_ERROR, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def problem_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that did not simply finish, each state listed separately."""
    cols = [c for c in ("state", "run_name", "tags.overrides", C.DIVERGED_STEP, C.DIVERGED_FRACTION, "lr",
                        C.THEORY_LR_MAX, "tags.stability", "tags.error") if c in runs]
    bad = runs[runs["state"] != "finished"][cols] if len(runs) else runs
    return bad.sort_values("state").rename(columns={"tags.overrides": "overrides", "tags.error": "error",
                                                    "tags.stability": "vs theory"})


KNOBS = {"lr": "learning rate", "noise": "noise", "batch_size": "batch size", "weight_decay": "weight decay",
         "steps": "budget (steps)", "n_train": "training points"}  # what a bias/variance panel can vary


def batch_numbers(series: pd.Series) -> pd.Series:
    """Batch sizes as numbers ('full' becomes the largest batch shown + 1)."""
    values = pd.to_numeric(series, errors="coerce")
    return values.fillna(values.max() + 1 if values.notna().any() else 1)


def knob_values(runs: pd.DataFrame, knob: str) -> pd.Series:
    return batch_numbers(runs[knob]) if knob == "batch_size" else runs[knob].astype(float)


def varied_knobs(runs: pd.DataFrame) -> list[str]:
    """The knobs that take more than one value among these runs."""
    return [k for k in KNOBS if k in runs and runs[k].nunique(dropna=True) > 1]


def reference_slice(runs: pd.DataFrame, knob: str, knobs: list[str]) -> tuple[pd.DataFrame, dict[str, object]]:
    """The runs where every other varied knob sits at its reference value, so that a panel varies one thing:
    each optimizer's best learning rate (lowest mean MSE of w), no weight decay, the largest noise, batch size,
    budget and training set."""
    chosen: dict[str, object] = {}
    for other in knobs:
        if other == knob:
            continue
        if other == "lr":
            score = runs[C.EST_W_MSE].fillna(runs[C.FULL_LOSS])
            means = runs.assign(score=score).groupby(["optimizer", "lr"])["score"].mean().dropna()
            best = means.groupby(level=0).idxmin().map(lambda pair: pair[1])
            runs = runs[runs["lr"] == runs["optimizer"].map(best)]
            chosen["lr"] = "each optimizer's best"
            continue
        values = knob_values(runs, other)
        chosen[other] = values.min() if other == "weight_decay" else values.max()
        runs = runs[values == chosen[other]]
    return runs, chosen


def collapse_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of one replicate that repeat the same settings under other seeds are replicates of each other: each
    such group of two or more finished runs becomes one row whose est/w_bias2, est/w_var and est/w_mse (with
    standard errors) are computed across its runs (spread = "seeds"); runs with replicates of their own stay as
    they are (spread = "replicates"). For figures of w's spread; the predictions' spread needs replicates."""
    import torch

    from linreg_lab.analysis import decompose, named

    runs = runs.assign(spread=np.where(runs[C.EST_W_VAR].notna(), "replicates", "none"))
    single = runs[(runs["spread"] == "none") & (runs["state"] == "finished") & runs[C.W_ERROR].notna()]
    rows = []
    for _, group in single.groupby("settings", dropna=False, sort=False):
        if len(group) < 2:
            continue
        err = group[[c for c in group.columns if re.fullmatch(C.W_ERROR_I.format(i=r"\d+"), c)]].dropna(axis=1)
        parts = decompose(torch.tensor(err.to_numpy(dtype=float)), torch.zeros(err.shape[1], dtype=torch.float64))
        row = group.iloc[0].copy()
        row[[c for c in row.index if c.startswith(C.theory_of(""))]] = np.nan  # theory would need every seed's design
        for key, value in named(parts, C.EST_PARTS["w"]).items():
            row[key] = value
        row["spread"], row[C.EST_REPLICATES] = "seeds", len(group)
        rows.append(row)
    kept = runs.drop(index=single.index[single.duplicated("settings", keep=False)])
    return pd.concat([kept, pd.DataFrame(rows)], ignore_index=True) if rows else kept
