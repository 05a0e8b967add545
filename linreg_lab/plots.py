"""Every figure the harness draws. Imported lazily: a run that draws nothing pays nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

MAX_POINTS = 2000  # a scatter of more points says nothing more


def plot_fit(X: np.ndarray, y: np.ndarray, w: float, b: float, true_w: float, true_b: float,
             path: Path, title: str) -> None:
    """One-feature data with the fitted line and the true line, as the tutorials draw it."""
    x = X[:, 0]
    if len(x) > MAX_POINTS:
        keep = np.random.default_rng(0).choice(len(x), MAX_POINTS, replace=False)
        x, y = x[keep], y[keep]
    grid = np.linspace(x.min(), x.max(), 2)
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(x, y, s=8, alpha=0.5, label="training data")
        ax.plot(grid, w * grid + b, color="C3", label=f"fit: y = {w:.4g} x + {b:.4g}")
        ax.plot(grid, true_w * grid + true_b, color="k", ls="--", lw=1, label=f"truth: y = {true_w:g} x + {true_b:g}")
        ax.set(xlabel="x", ylabel="y", title=title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def plot_grid_cost(w_values: np.ndarray, costs: np.ndarray, best_w: float, path: Path, title: str) -> None:
    """Cost against w for a one-feature grid search: a parabola with its minimum at the best w."""
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(w_values, costs, marker=".")
        ax.axvline(best_w, color="C3", ls="--", label=f"best w = {best_w:.4g}")
        ax.set(xlabel="w", ylabel="cost", title=title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


# ---- report figures: each takes the tidy runs and histories, returns (figure or None, note) ----

def save(fig, path: Path) -> None:
    """Write a report figure as PNG and free it."""
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _varied(runs, col: str) -> bool:
    return col in runs and runs[col].nunique(dropna=True) > 1


def convergence(runs, hist):
    """train/loss against step, a panel per optimizer, a line per learning rate, bands, LS floor."""
    curves = hist[hist["metric"] == "train/loss"]
    if curves.empty:
        return None, "nothing to show: no run has a train/loss history (solver-only sweep?)"
    optimizers = sorted(curves["optimizer"].dropna().unique())
    fig, axes = plt.subplots(1, len(optimizers), figsize=(4.2 * len(optimizers), 3.6), squeeze=False, sharey=True)
    palette = sns.color_palette("viridis", curves["lr"].nunique())
    colors = dict(zip(sorted(curves["lr"].dropna().unique()), palette))
    quantiles = hist[hist["metric"].isin(["train/loss_p10", "train/loss_p90"])]
    for ax, opt in zip(axes[0], optimizers):
        for lr, by_lr in curves[curves["optimizer"] == opt].groupby("lr"):
            step, mid, lo, hi = lr_band(by_lr, quantiles)
            ax.plot(step, mid, color=colors.get(lr), lw=1, label=f"lr {lr:g}")
            if lo is not None:
                ax.fill_between(step, lo, hi, color=colors.get(lr), alpha=0.15)
        floor = runs.loc[runs["optimizer"] == opt, "ols/loss"].mean() if "ols/loss" in runs else np.nan
        if np.isfinite(floor) and floor > 0:
            ax.axhline(floor, color="k", ls="--", lw=1, label="least squares")
        ax.set(yscale="log", xscale="log", title=str(opt), xlabel="step")
        ax.legend(fontsize=7)
    start = curves.sort_values("step").groupby("run_id")["value"].first().median()
    if np.isfinite(start) and start > 0:  # diverging curves would squash the rest: they leave the top
        axes[0][0].set_ylim(top=start * 100)
    axes[0][0].set_ylabel("train/loss")
    for axis in (a for ax in axes[0] for a in (ax.xaxis, ax.yaxis)):
        low, high = axis.get_view_interval()
        if high > 1000 * low:  # ~80 unlabelled marks a panel over 9 decades: most of the figure's drawing time
            axis.set_minor_locator(NullLocator())
    return fig, ("One line per learning rate. One run: its mean over replicates, the band its replicates' "
                 "10th to 90th percentile. Several runs (seeds): their median, the band their 10th to 90th "
                 "percentile. The dashed line is the least-squares loss.")


def lr_band(by_lr, quantiles):
    """(steps, line, band low, band high) of one learning rate's runs; the band is None when there is none."""
    ids = by_lr["run_id"].unique()
    if len(ids) == 1:
        own = quantiles[quantiles["run_id"] == ids[0]]
        lo, hi = (own[own["metric"] == f"train/loss_p{q}"]["value"].to_numpy() for q in (10, 90))
        band = len(lo) == len(hi) == len(by_lr) > 0
        return by_lr["step"], by_lr["value"], lo if band else None, hi if band else None
    per_step = by_lr.groupby("step")["value"]
    return (per_step.median().index, per_step.median(), per_step.quantile(0.1).to_numpy(),
            per_step.quantile(0.9).to_numpy())


def time_to_target(runs, hist):
    """Steps and seconds to reach the target loss, per optimizer at its best learning rate; censored marked."""
    from linreg_lab.report import best_lr_table

    best = best_lr_table(runs)
    if best.empty or "ttt_steps" not in best:
        return None, "nothing to show: no finished gradient run with a time to target"
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, col, label in ((axes[0], "ttt_steps", "steps"), (axes[1], "ttt_seconds", "seconds")):
        bars = ax.bar(best["optimizer"].astype(str), best[col], color=sns.color_palette("deep", len(best)))
        for bar, censored in zip(bars, best["ttt_censored"]):
            if censored > 0:
                bar.set_hatch("//")
                ax.annotate("censored", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            fontsize=7)
        ax.set(ylabel=f"time to target ({label})", title=f"in {label}")
    return fig, "Hatched bars never reached the target within their budget (censored at the budget)."


def lr_sensitivity(runs, hist):
    """Final |w - w_true| against learning rate, a line per optimizer, diverged runs marked, 2/lambda_max."""
    if not _varied(runs, "lr"):
        return None, "nothing to show: the sweep did not vary the learning rate"
    ok = runs[(runs["state"] == "finished") & runs["w_error/l2"].notna()]
    bad = runs[runs["state"] == "diverged"]
    if ok.empty and bad.empty:
        return None, "nothing to show: no run finished"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=ok, x="lr", y="w_error/l2", hue="optimizer", marker="o", ax=ax, errorbar=("pi", 80))
    top = ok["w_error/l2"].max() if len(ok) else 1.0
    if len(bad):
        ax.scatter(bad["lr"], np.full(len(bad), top * 2), marker="x", color="r", label="diverged")
    bound = runs["theory/lr_max"].median() if "theory/lr_max" in runs else np.nan
    if np.isfinite(bound):
        ax.axvline(bound, color="k", ls="--", lw=1, label="2/λmax (full-batch GD)")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final |w - w_true|")
    ax.legend(fontsize=7)
    return fig, "Red crosses: diverged runs. Bands: spread across runs with the same settings."


KNOBS = (("noise", "noise"), ("batch_size", "batch size"), ("weight_decay", "weight decay"), ("steps", "budget"))


def reference_slice(ok, knob: str, knobs: list[str]):
    """The runs where every other varied knob sits at its reference value: no weight decay,
    the largest budget, the largest noise and batch size (so that each panel varies one thing)."""
    chosen = {}
    for other in knobs:
        if other == knob:
            continue
        values = pd_numeric(ok[other]) if other == "batch_size" else ok[other].astype(float)
        chosen[other] = values.min() if other == "weight_decay" else values.max()
        ok = ok[values == chosen[other]]
    return ok, chosen


def bias_variance(runs, hist):
    """bias^2, variance and their sum (of w and of predictions) against each knob the sweep varied."""
    ok = runs[runs["state"] == "finished"]
    knobs = [(c, label) for c, label in KNOBS if _varied(ok, c)]
    if "est/w_var" not in ok or ok["est/replicates"].max() < 2 or not knobs:
        return None, "nothing to show: needs replicates > 1 and a sweep over noise, batch size, weight decay or budget"
    fig, axes = plt.subplots(2, len(knobs), figsize=(4 * len(knobs), 6.5), squeeze=False)
    notes = []
    for j, (col, label) in enumerate(knobs):
        part, chosen = reference_slice(ok, col, [c for c, _ in knobs])
        notes.append(f"{label}: " + (", ".join(f"{k}={v:g}" for k, v in chosen.items()) or "all runs"))
        x = pd_numeric(part[col]) if col == "batch_size" else part[col].astype(float)
        for i, (prefix, what) in enumerate((("est/w_", "of w"), ("pred/", "of predictions"))):
            ax = axes[i][j]
            for key in ("bias2", "var", "mse" if prefix == "est/w_" else "test_mse"):
                means = part.assign(_x=x).groupby("_x")[prefix + key].mean()
                ax.plot(means.index, means.values, marker="o", label=key)
            if prefix == "est/w_" and "theory/w_var" in part:
                theory = part.assign(_x=x).groupby("_x")["theory/w_var"].mean()
                ax.plot(theory.index, theory.values, "k--", lw=1, label="OLS variance (theory)")
            ax.set(yscale="log", xlabel=label, title=f"{what} vs {label}")
            if (x > 0).all() and x.max() / x.min() >= 10:
                ax.set_xscale("log")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, "Each panel varies one knob with the others at: " + "; ".join(notes) + "."


def pd_numeric(series):
    """Batch sizes as numbers ('full' becomes the largest batch shown + 1)."""
    values = pd.to_numeric(series, errors="coerce")
    return values.fillna(values.max() + 1 if values.notna().any() else 1)


def heatmap(runs, hist):
    """Final |w - w_true| over optimizer x learning rate; diverged cells say so."""
    if not (_varied(runs, "lr") and "optimizer" in runs):
        return None, "nothing to show: needs several learning rates"
    table = runs[runs["state"] == "finished"].pivot_table(index="optimizer", columns="lr", values="w_error/l2",
                                                         aggfunc="mean")
    diverged = runs.assign(d=runs["state"] == "diverged").pivot_table(index="optimizer", columns="lr", values="d",
                                                                       aggfunc="any")
    table = table.reindex(index=diverged.index, columns=diverged.columns)
    div = diverged.fillna(False).astype(bool)
    table = table.mask(div)  # a diverged cell gets no colour: its error is not on the same scale
    labels = table.map(lambda v: f"{v:.2g}" if np.isfinite(v) else "")
    fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 2, 0.6 * table.shape[0] + 1.5))
    sns.heatmap(np.log10(table), annot=labels, fmt="", cmap="viridis_r", ax=ax,
                cbar_kws={"label": "log10 |w - w_true|"})
    for i, j in zip(*np.nonzero(div.to_numpy())):  # seaborn leaves blank cells unannotated
        ax.text(j + 0.5, i + 0.5, "div", ha="center", va="center", color="r")
    ax.set(xlabel="learning rate", ylabel="optimizer")
    return fig, "'div' marks cells where a run diverged."


PER_RUN_BARS = 40  # beyond this many runs, wall time is drawn per optimizer (a bar per run is unreadable)


def wall_time(runs, hist):
    """Wall time: the whole job and its training loop, a bar per run, or per optimizer (median, 10-90%)."""
    if "time/total_s" not in runs or runs["time/total_s"].isna().all():
        return None, "nothing to show: no run recorded its time"
    df = runs.dropna(subset=["time/total_s"]).sort_values("time/total_s")
    if len(df) <= PER_RUN_BARS:
        fig, ax = plt.subplots(figsize=(7, 0.22 * len(df) + 1.5))
        ax.barh(df["run_name"], df["time/total_s"], color="C0", label="whole job")
        ax.barh(df["run_name"], df["time/train_s"], color="C1", label="training loop")
        ax.set(xlabel="seconds")
        ax.tick_params(axis="y", labelsize=6)
        ax.legend()
        return fig, ""
    group = "optimizer" if "optimizer" in df and df["optimizer"].notna().any() else "model"
    rows = df.groupby(group, dropna=False)
    fig, ax = plt.subplots(figsize=(7, 0.6 * rows.ngroups + 1.5))
    for offset, (col, color, label) in enumerate([("time/total_s", "C0", "whole job"),
                                                  ("time/train_s", "C1", "training loop")]):
        q = rows[col].quantile([0.1, 0.5, 0.9]).unstack()
        y = np.arange(len(q)) + 0.2 * (offset - 0.5)
        ax.barh(y, q[0.5], height=0.4, color=color, label=label,
                xerr=np.vstack([q[0.5] - q[0.1], q[0.9] - q[0.5]]), error_kw={"lw": 1})
    ax.set_yticks(np.arange(rows.ngroups), [f"{name} ({len(g)} runs)" for name, g in rows])
    ax.set(xlabel="seconds: median, whiskers 10-90%")
    ax.legend(loc="lower right")
    return fig, f"{len(df)} runs: per {group}, the median and 10-90% range (a bar per run up to {PER_RUN_BARS} runs)"


REPORT_FIGURES = [
    ("Convergence", convergence),
    ("Time to target", time_to_target),
    ("Learning-rate sensitivity", lr_sensitivity),
    ("Bias and variance", bias_variance),
    ("Heatmap: final w error", heatmap),
    ("Wall time", wall_time),
]
