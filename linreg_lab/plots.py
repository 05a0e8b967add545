"""Every figure the harness draws. Imported lazily: a run that draws nothing pays nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from linreg_lab import contract as C  # noqa: E402
from linreg_lab.batch_scaling import steps_table as scaling_table  # noqa: E402
from linreg_lab.conditioning import THEORY_SERIES, slope_text, slopes, steps_table  # noqa: E402
from linreg_lab.double_descent import MIN_NORM, RIDGE, curve_table  # noqa: E402
from linreg_lab.tables import (  # noqa: E402
    KNOBS,
    best_lr_table,
    collapse_seeds,
    knob_values,
    mean_se,
    num,
    reference_slice,
    varied_knobs,
)

MAX_POINTS = 2000  # a scatter of more points says nothing more
ONE_KNOB = "python -m linreg_lab.run -m optimizer=sgd,adam lr=0.3,0.1,0.03,0.01"  # a sweep that feeds every figure


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


def convergence(runs, hist):
    """train/loss against step, a panel per optimizer, a line per learning rate, bands, LS floor."""
    curves = hist[hist["metric"] == C.TRAIN_LOSS]
    if curves.empty:
        return None, ("nothing to show: no run has a train/loss history (a solver-only sweep); for example: "
                      f"{ONE_KNOB}")
    optimizers = sorted(curves["optimizer"].dropna().unique())
    fig, axes = plt.subplots(1, len(optimizers), figsize=(4.2 * len(optimizers), 3.6), squeeze=False, sharey=True)
    palette = sns.color_palette("viridis", curves["lr"].nunique())
    colors = dict(zip(sorted(curves["lr"].dropna().unique()), palette))
    quantiles = hist[hist["metric"].isin([C.TRAIN_LOSS_P10, C.TRAIN_LOSS_P90])]
    for ax, opt in zip(axes[0], optimizers):
        for lr, by_lr in curves[curves["optimizer"] == opt].groupby("lr"):
            step, mid, band_step, lo, hi = lr_band(by_lr, quantiles)
            ax.plot(step, mid, color=colors.get(lr), lw=1, label=f"lr {lr:g}")
            if lo is not None:
                ax.fill_between(band_step, lo, hi, color=colors.get(lr), alpha=0.15)
        floor = runs.loc[runs["optimizer"] == opt, C.OLS_LOSS].mean() if C.OLS_LOSS in runs else np.nan
        if np.isfinite(floor) and floor > 0:
            ax.axhline(floor, color="k", ls="--", lw=1, label="least squares")
        ax.set(yscale="log", xscale="log", title=str(opt), xlabel="step")
        ax.legend(fontsize=7)
    start = curves.sort_values("step").groupby("run_id")["value"].first().median()
    if np.isfinite(start) and start > 0:  # diverging curves would squash the rest: they leave the top
        axes[0][0].set_ylim(top=start * 100)
    axes[0][0].set_ylabel(C.TRAIN_LOSS)
    for axis in (a for ax in axes[0] for a in (ax.xaxis, ax.yaxis)):
        low, high = axis.get_view_interval()
        if high > 1000 * low:  # ~80 unlabelled marks a panel over 9 decades: most of the figure's drawing time
            axis.set_minor_locator(NullLocator())
    return fig, ("One line per learning rate. One run: its mean over replicates, the band its replicates' "
                 "10th to 90th percentile. Several runs (seeds): their median, the band their 10th to 90th "
                 "percentile. The dashed line is the least-squares loss.")


def lr_band(by_lr, quantiles):
    """(steps, line, band steps, band low, band high) of one learning rate's runs; the band is None when there is
    none. One run's band is its replicates' logged percentiles (at up to curves.SIDE_POINTS steps); several runs'
    is theirs."""
    ids = by_lr["run_id"].unique()
    if len(ids) == 1:
        own = quantiles[quantiles["run_id"] == ids[0]]
        lo, hi = (own[own["metric"] == C.loss_percentile(q)].sort_values("step") for q in (10, 90))
        if len(lo) and len(lo) == len(hi):
            return by_lr["step"], by_lr["value"], lo["step"].to_numpy(), lo["value"].to_numpy(), hi["value"].to_numpy()
        return by_lr["step"], by_lr["value"], None, None, None
    per_step = by_lr.groupby("step")["value"]
    middle = per_step.median()
    return middle.index, middle, middle.index, per_step.quantile(0.1).to_numpy(), per_step.quantile(0.9).to_numpy()


def time_to_target(runs, hist):
    """Steps and seconds to reach the target loss, per optimizer at its best learning rate; censored marked."""
    best = best_lr_table(runs)
    if best.empty or best["ttt_steps"].isna().all():
        return None, ("nothing to show: no finished gradient run with a time to target; for example: "
                      "python -m linreg_lab.run -m optimizer=sgd,adam lr=0.1,0.01")
    labels = [f"{opt} (lr {lr:g})" for opt, lr in zip(best["optimizer"], best["best_lr"])]
    # horizontal bars: the names sit on the y axis, one under the other, and never overlap
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 0.45 * len(best) + 1.4), sharey=True, layout="constrained")
    for ax, col, label in ((axes[0], "ttt_steps", "steps"), (axes[1], "ttt_seconds", "seconds")):
        bars = ax.barh(labels, best[col], color=sns.color_palette("deep", len(best)))
        for bar, censored in zip(bars, best["ttt_censored"]):
            if censored > 0:
                bar.set_hatch("//")
                ax.annotate(" censored", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center",
                            fontsize=8)
        ax.set(xlabel=f"time to target ({label})", title=f"in {label}")
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
    axes[0].invert_yaxis()  # the fastest-converging (lowest loss) first, as in the table
    return fig, ("The optimizers, each at its best learning rate (beside its name; the lowest final training loss, "
                 "not the fewest steps): steps and seconds until the "
                 "training loss is within target_rel of the least-squares loss. Hatched bars never reached the target "
                 "within their budget (censored at the budget).")


def lr_sensitivity(runs, hist):
    """Final |w - w_true| against learning rate, a line per optimizer, diverged runs marked, 2/lambda_max."""
    if "lr" not in varied_knobs(runs):
        return None, f"nothing to show: the sweep did not vary the learning rate; for example: {ONE_KNOB}"
    ok = runs[(runs["state"] == "finished") & runs[C.W_ERROR].notna()]
    bad = runs[runs["state"] == "diverged"]
    if ok.empty and bad.empty:
        return None, "nothing to show: no run finished"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    searched = continuous_rates(runs)
    if searched:  # a sweeper's own search (Optuna): each rate once, drawn as points with a running median
        palette = dict(zip(sorted(ok["optimizer"].unique()), sns.color_palette("deep")))
        for opt, g in ok.sort_values("lr").groupby("optimizer"):
            ax.scatter(g["lr"], g[C.W_ERROR], s=18, color=palette[opt], label=opt)
            window = max(3, len(g) // 5) | 1
            ax.plot(g["lr"], g[C.W_ERROR].rolling(window, center=True, min_periods=1).median(),
                    color=palette[opt], lw=1.2)
    else:
        sns.lineplot(data=ok, x="lr", y=C.W_ERROR, hue="optimizer", marker="o", ax=ax, errorbar=("pi", 80))
    top = ok[C.W_ERROR].max() if len(ok) else 1.0
    if len(bad):
        ax.scatter(bad["lr"], np.full(len(bad), top * 2), marker="x", color="r", label="diverged")
    bound = runs[C.THEORY_LR_MAX].median() if C.THEORY_LR_MAX in runs else np.nan
    if np.isfinite(bound):
        ax.axvline(bound, color="k", ls="--", lw=1, label="2/λmax (full-batch GD)")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final |w - w_true|")
    ax.legend(fontsize=7)
    if searched:
        return fig, ("Red crosses: diverged runs. The rates come from the sweeper's own search (each run its own "
                     "rate): points, with a running median of neighbouring rates as the line.")
    return fig, "Red crosses: diverged runs. Bands: spread across runs with the same settings."


def continuous_rates(runs) -> bool:
    """Were the rates drawn by a search rather than set on a grid: at least 6 of them, 80% used by one run only?"""
    counts = runs["lr"].dropna().value_counts()
    return len(counts) >= 6 and (counts == 1).mean() >= 0.8


QUANTITIES = {"w": ((C.EST_W_BIAS2, "bias²"), (C.EST_W_VAR, "variance"), (C.EST_W_MSE, "MSE")),
              "pred": ((C.PRED_BIAS2, "bias²"), (C.PRED_VAR, "variance"), (C.PRED_TEST_MSE, "test MSE"))}
WHAT = {"w": "of ŵ", "pred": "of predictions"}


def x_scale(ax, values: np.ndarray) -> None:
    """A log x axis when the values span a decade or more; symlog, 0 at the left edge, when they include 0."""
    values = values[np.isfinite(values)]
    if not len(values) or values.max() <= 0:
        return
    positive = values[values > 0]
    if (values <= 0).any():
        ax.set_xscale("symlog", linthresh=positive.min())
        ax.set_xlim(left=-0.3 * positive.min())
    elif positive.max() / positive.min() >= 10:
        ax.set_xscale("log")


def decomposition(runs, target: str):
    """bias^2, variance and MSE (of w or of predictions) against each knob the sweep varied: measured points with
    one standard error, theory dashed beside them, a line per optimizer. Returns (figure, caption)."""
    ok = runs[runs["state"] == "finished"]
    knobs = varied_knobs(ok)
    if not knobs:
        return None, (f"nothing to show: the sweep varied none of {', '.join(KNOBS.values())}; for example: "
                      f"{ONE_KNOB}")
    ok = collapse_seeds(ok) if target == "w" else ok  # runs of one replicate: their seeds are the replicates
    if ok[QUANTITIES[target][1][0]].notna().sum() == 0:
        return None, ("nothing to show: every run has one replicate" + (", and no setting was run under several "
                      "seeds" if target == "w" else "") + "; a variance needs several; for example: "
                      f"{ONE_KNOB} replicates=8")
    seeds = int((ok.get("spread") == "seeds").sum()) if "spread" in ok else 0
    line = ok["optimizer"].astype(str)
    if ok["sampling"].nunique() > 1:  # batches with replacement against reshuffled epochs: a line each
        line = line + " (" + ok["sampling"].astype(str) + ")"
    ok = ok.assign(line=line)
    colors = dict(zip(sorted(ok["line"].unique()), sns.color_palette("deep", 10)))
    fig, axes = plt.subplots(3, len(knobs), figsize=(3.7 * len(knobs) + 0.5, 7.4), squeeze=False)
    panels, hidden, drawn = [], 0, 0
    for j, knob in enumerate(knobs):
        part, chosen = reference_slice(ok, knob, knobs)
        ratios = []
        for name, runs_o in part.groupby("line"):
            by_x = runs_o.assign(knob_x=knob_values(runs_o, knob)).groupby("knob_x")
            kind = runs_o["tags.theory"].mode().iloc[0]
            for i, (key, label) in enumerate(QUANTITIES[target]):
                shown, ratio = draw_quantity(axes[i][j], by_x, key, colors[name], name, kind)
                hidden += int((~shown).sum())
                drawn += int(shown.sum()) if i == 1 and j == 0 else 0
                if i > 0 and ratio is not None:  # a bias^2 near 0 makes a meaningless ratio
                    ratios.append(f"{name} {label} {ratio:.2g}")
        for i, (_key, label) in enumerate(QUANTITIES[target]):
            axes[i][j].set(title=f"{label} {WHAT[target]}", xlabel=KNOBS[knob])
            x_scale(axes[i][j], knob_values(part, knob).to_numpy())
            grid_ticks(axes[i][j], knob_values(part, knob).to_numpy())
        if target == "pred":  # theory's optima minimize the expected test error, not the error of w
            mark_optimum(axes[2][j], part, knob, QUANTITIES[target][2][0])
        at = ", ".join(f"{k} {v if isinstance(v, str) else f'{v:g}'}" for k, v in chosen.items())
        panels.append(f"{KNOBS[knob]} ({at or 'all runs'}): measured/theory {'; '.join(ratios) or 'no theory'}")
    for ax in axes.flat:
        if ax.has_data():
            ax.legend(fontsize=6)
    fig.tight_layout()
    none = sorted(ok.loc[ok["tags.theory"] == "none", "optimizer"].dropna().unique())
    caption = (f"Rows: bias², variance and MSE {WHAT[target]} over each run's replicates (unbiased estimates; "
               "error bars one standard error). Dashed: theory, exact for ridge and full-batch gradient descent, "
               "approximate for mini-batch SGD and momentum (small-rate batch noise assuming batches drawn with "
               "replacement: reshuffled epochs are quieter). Panels, with the other knobs held at: "
               + "; ".join(panels) + " (medians over the panel's points)."
               + (f" No theory for {', '.join(none)}." if none else "")
               + (f" {seeds} points pool runs of one replicate across their seeds (no theory drawn for them)."
                  if seeds else "")
               + (f" {hidden} estimates at or below 0 (within noise of 0) are not drawn on the log axes." if hidden
                  else "") + f" Variance drawn for {drawn} runs' settings in the first panel.")
    return fig, caption


def draw_quantity(ax, by_x, key: str, color, name: str, kind: str):
    """One line's measured points (mean over its runs at each x, error bars one standard error) and its theory,
    dashed, on a log axis. Returns which points were drawn (an unbiased bias^2 at or below 0 cannot be) and the
    median measured/theory ratio (None without theory)."""
    mean, se = by_x[key].mean().dropna(), by_x[key + "_se"].agg(mean_se).fillna(0.0)
    shown = mean > 0
    mean, se = mean[shown], se.reindex(mean.index)[shown]
    # plain arrays: matplotlib reads a one-point Series through float(), which pandas deprecates
    ax.errorbar(mean.index.to_numpy(), mean.to_numpy(), yerr=np.stack([np.minimum(se, 0.9 * mean), se]),
                color=color, marker="o", ms=4, lw=1, capsize=2, label=name)
    theory = by_x[C.theory_of(key)].mean().dropna()
    ax.set_yscale("log")
    y_range(ax, mean.to_numpy(), theory.to_numpy())
    if not len(theory):
        return shown, None
    ax.plot(theory.index, theory.values, color=color, ls="--", lw=1.2, alpha=0.8, label=f"{name} theory ({kind})")
    ratio = (mean / theory).replace([np.inf, -np.inf], np.nan).dropna()
    return shown, float(ratio.median()) if len(ratio) else None


def grid_ticks(ax, values: np.ndarray) -> None:
    """x ticks at the values the sweep ran (up to 8 of them, labelled as given), none between; small labels."""
    values = np.unique(values[np.isfinite(values)])
    if 1 < len(values) <= 8:
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="y", which="minor", labelsize=6)


def y_range(ax, measured: np.ndarray, theory: np.ndarray) -> None:
    """Widen a log axis to span these measured points, and theory's where it is within 1000x of them (a theory of
    an exactly unbiased estimate, ~1e-30, would squash the points into a line). Limits the axis had from earlier
    lines are kept."""
    measured = measured[np.isfinite(measured) & (measured > 0)]
    if not len(measured):
        return
    floor = measured.min() / 1e3
    values = np.r_[measured, theory[np.isfinite(theory) & (theory > floor)]]
    low, high = values.min() / 3, values.max() * 3
    if not ax.get_autoscaley_on():  # an earlier line set the limits: widen them
        low, high = min(low, ax.get_ylim()[0]), max(high, ax.get_ylim()[1])
    ax.set_ylim(low, high)


def mark_optimum(ax, part, knob: str, key: str) -> None:
    """On weight-decay and budget panels: the measured minimum of the MSE and theory's optimum."""
    theory_col = {"weight_decay": C.THEORY_BEST_WEIGHT_DECAY, "steps": C.THEORY_BEST_STEPS}.get(knob)
    if theory_col is None:
        return
    means = part.assign(knob_x=knob_values(part, knob)).groupby("knob_x")[key].mean().dropna()
    if len(means) > 1:
        ax.axvline(means.idxmin(), color="0.4", ls=":", lw=1.2, label=f"measured optimum {means.idxmin():g}")
    theory = part[theory_col].median()
    if np.isfinite(theory):
        ax.axvline(theory, color="k", ls="-.", lw=1, label=f"theory optimum {theory:.3g}")


def bias_variance(runs, hist):
    return decomposition(runs, "w")


def bias_variance_predictions(runs, hist):
    return decomposition(runs, "pred")


def heatmap(runs, hist):
    """Final |w - w_true| over optimizer x learning rate; diverged cells say so."""
    if not ("lr" in varied_knobs(runs) and "optimizer" in runs):
        return None, f"nothing to show: needs several learning rates; for example: {ONE_KNOB}"
    table = runs[runs["state"] == "finished"].pivot_table(index="optimizer", columns="lr", values=C.W_ERROR,
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
    if C.TIME_TOTAL not in runs or runs[C.TIME_TOTAL].isna().all():
        return None, "nothing to show: no run recorded its time"
    df = runs.dropna(subset=[C.TIME_TOTAL]).sort_values(C.TIME_TOTAL)
    if len(df) <= PER_RUN_BARS:
        fig, ax = plt.subplots(figsize=(7, 0.22 * len(df) + 1.5))
        ax.barh(df["run_name"], df[C.TIME_TOTAL], color="C0", label="whole job")
        ax.barh(df["run_name"], df[C.TIME_TRAIN], color="C1", label="training loop")
        ax.set(xlabel="seconds")
        ax.tick_params(axis="y", labelsize=6)
        ax.legend()
        return fig, ""
    group = "optimizer" if "optimizer" in df and df["optimizer"].notna().any() else "model"
    rows = df.groupby(group, dropna=False)
    fig, ax = plt.subplots(figsize=(7, 0.6 * rows.ngroups + 1.5))
    for offset, (col, color, label) in enumerate([(C.TIME_TOTAL, "C0", "whole job"),
                                                  (C.TIME_TRAIN, "C1", "training loop")]):
        q = rows[col].quantile([0.1, 0.5, 0.9]).unstack()
        y = np.arange(len(q)) + 0.2 * (offset - 0.5)
        ax.barh(y, q[0.5], height=0.4, color=color, label=label,
                xerr=np.vstack([q[0.5] - q[0.1], q[0.9] - q[0.5]]), error_kw={"lw": 1})
    ax.set_yticks(np.arange(rows.ngroups), [f"{name} ({len(g)} runs)" for name, g in rows])
    ax.set(xlabel="seconds: median, whiskers 10-90%")
    ax.legend(loc="lower right")
    return fig, f"{len(df)} runs: per {group}, the median and 10-90% range (a bar per run up to {PER_RUN_BARS} runs)"


DD_STYLE = {MIN_NORM: ("C3", "o"), RIDGE: ("C2", "s")}  # the study's series; gradient descent in blues
FLOOR = 1e-9  # values below this fraction of a panel's largest are drawn as nothing: zero, up to rounding


def double_descent(runs, hist):
    """Test MSE, bias^2 and variance (given the design) against p/n on log axes, a line per series, the isotropic
    Gaussian design's exact values dashed, the interpolation threshold p = n marked. Drawn only for the study."""
    table = curve_table(runs)
    if table.empty:
        return None, None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True)
    panels = (("test_mse", "theory_test_mse", "test MSE"), ("bias2_cond", "theory_bias2_cond", "bias² given X"),
              ("var_cond", "theory_var_cond", "variance given X"))
    gd = [s for s in table["series"].unique() if s not in DD_STYLE]
    blues = dict(zip(gd, sns.color_palette("Blues", len(gd) + 2)[2:]))
    for ax, (measured, expected, label) in zip(axes, panels):
        top = table[measured].max()
        for series, rows in table.groupby("series", sort=False):
            color, marker = DD_STYLE.get(series, (blues.get(series), "."))
            shown = rows[rows[measured] > FLOOR * top]  # an exact zero (bias below p = n) has no place on a log axis
            ax.plot(shown["p_over_n"], shown[measured], marker=marker, ms=4, lw=1, color=color, label=series)
            theory = rows[rows[expected] > FLOOR * top] if series in DD_STYLE else rows.iloc[:0]
            ax.plot(theory["p_over_n"], theory[expected], ls="--", lw=2.2, color="k", alpha=0.55, zorder=5)
        ax.axvline(1.0, color="k", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="p / n (features per training point)", ylabel=label, title=label)
        ax.set_xticks([0.25, 0.5, 1, 2, 4], labels=["0.25", "0.5", "1", "2", "4"])
        ax.xaxis.set_minor_locator(NullLocator())
    axes[0].text(1.03, 0.97, "p = n", transform=axes[0].get_xaxis_transform(), fontsize=8, va="top")
    axes[0].plot([], [], ls="--", lw=2.2, color="k", alpha=0.55, label="theory (ridge: Marchenko-Pastur limit)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig, ("Measured (solid) against the isotropic Gaussian design's expectations (dashed): for the minimum-"
                 "norm fit exact at every finite n and p except |p - n| <= 1, where they are infinite; for ridge the "
                 "limit as n, p grow. Bias² and variance are conditional on the design (est/w_bias2_cond, "
                 "est/w_var_cond: the papers' decomposition, the design's randomness counted in the bias; zero, and "
                 "not drawn, for least squares below p = n); the one over design and noise is est/w_bias2 and "
                 "est/w_var. Test MSE includes the label noise σ².")


def optimizer_colors() -> dict[str, tuple]:
    """One colour per optimizer, the same in every study figure."""
    return dict(zip(C.OPTIMIZERS, sns.color_palette("deep", len(C.OPTIMIZERS))))


def conditioning(runs, hist):
    """Steps to target at each optimizer's best rate against kappa (log-log), a panel per basis, a line per
    optimizer (hollow markers: censored at the budget), theory's tuned gradient descent and heavy ball dashed,
    each line's fitted slope in the legend. Drawn only for the study."""
    table = steps_table(runs)
    if table.empty:
        return None, None
    fits = slopes(table).set_index(["basis", "series"])["slope"]
    bases = list(dict.fromkeys(table["basis"]))
    fig, axes = plt.subplots(1, len(bases), figsize=(6.2 * len(bases), 4.6), sharey=True, squeeze=False)
    colors = optimizer_colors()
    for ax, basis in zip(axes[0], bases):
        part = table[table["basis"] == basis]
        for opt, g in part.groupby("optimizer", sort=False):
            color = colors.get(opt)
            ax.plot(g["kappa"], g["steps"], color=color, lw=1.2, marker="o", ms=0,
                    label=f"{opt} (slope {slope_text(fits.get((basis, opt)))})")
            done, cut = g[~g["censored"]], g[g["censored"]]
            ax.scatter(done["kappa"], done["steps"], color=color, s=22, zorder=3)
            ax.scatter(cut["kappa"], cut["steps"], facecolors="none", edgecolors=color, s=40, zorder=3)
            if opt in THEORY_SERIES and g["theory_steps"].notna().any():
                ax.plot(g["kappa"], g["theory_steps"], ls="--", lw=2, color=color, alpha=0.6,
                        label=f"{THEORY_SERIES[opt]} (slope {slope_text(fits.get((basis, THEORY_SERIES[opt])))})")
        ax.set(xscale="log", yscale="log", xlabel="κ = λmax / λmin of the features' covariance",
               ylabel="steps to target at the best rate", title=f"basis: {basis}")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig, ("Each optimizer at its best rate, the one with the fewest steps to target (ttt/steps), the theory-"
                 "tuned runs included; hollow markers never reached the target within the budget (censored there, "
                 "left out of the slope). Dashed: theory/steps_to_target of the runs tuned by theory_tuned (gradient "
                 "descent at 2/(L+μ), heavy ball at Polyak's pair), computed from each run's own data.")


def batch_scaling(runs, hist):
    """Steps to target at each batch size's best rate (fewest steps) against batch size, log-log, a line per
    optimizer (hollow: censored), the fitted S(B) dashed, theory's fewest steps (sgd, momentum) as crosses, a
    perfect-scaling guide (steps halving per doubling) from sgd's smallest batch (else the first optimizer's).
    Drawn only for the study."""
    table = scaling_table(runs)
    if table.empty:
        return None, None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = optimizer_colors()
    for opt, g in table.groupby("optimizer", sort=False):
        color = colors.get(opt)
        fit = g["fit_critical_batch"].iloc[0]
        ax.plot(g["batch_size"], g["steps"], color=color, lw=1.2, label=f"{opt} (critical batch {num(fit)})")
        done, cut = g[~g["censored"]], g[g["censored"]]
        ax.scatter(done["batch_size"], done["steps"], color=color, s=22, zorder=3)
        ax.scatter(cut["batch_size"], cut["steps"], facecolors="none", edgecolors=color, s=40, zorder=3)
        if np.isfinite(fit):
            ax.plot(g["batch_size"], g["fit_steps"], ls="--", lw=1.5, color=color, alpha=0.7)
        if g["theory_steps"].notna().any():
            ax.scatter(g["batch_size"], g["theory_steps"], marker="x", color=color, s=36, zorder=4)
    anchor = table[table["optimizer"] == "sgd"] if (table["optimizer"] == "sgd").any() else table
    first = anchor.sort_values("batch_size").iloc[0]
    guide = table["batch_size"].drop_duplicates().sort_values()
    ax.plot(guide, first["steps"] * first["batch_size"] / guide, color="k", ls=":", lw=1,
            label="perfect scaling (∝ 1/B)")
    ax.plot([], [], ls="--", color="k", alpha=0.7, label="fit S_min (1 + B_noise / B)")
    ax.scatter([], [], marker="x", color="k", label="theory's fewest steps (sgd, momentum)")
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="steps to target at the best rate",
           ylim=(max(0.5, table["steps"].min() / 2), table["steps"].max() * 2))
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, ("Each optimizer at each batch size's best rate, the one with the fewest steps to target "
                 "(ttt/steps); not the lowest final loss. Hollow markers never reached the target within the samples "
                 "budget. Crosses: theory/steps_to_target's fewest over the same rates (the expected loss of SGD and "
                 "heavy ball on streaming Gaussian rows, exact).")


def best_rate_by_batch(runs, hist):
    """The best rate (fewest steps to target) against batch size, log-log, a line per optimizer, a slope-1 guide."""
    table = scaling_table(runs)
    if table.empty:
        return None, None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = optimizer_colors()
    for opt, g in table.groupby("optimizer", sort=False):
        ax.plot(g["batch_size"], g["best_lr"], marker="o", ms=4, color=colors.get(opt), label=opt)
    start = table.dropna(subset=["best_lr"]).sort_values("batch_size").iloc[0]
    guide = table["batch_size"].drop_duplicates().sort_values()
    ax.plot(guide, start["best_lr"] * guide / start["batch_size"], color="k", ls=":", lw=1, label="∝ B")
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="best rate (fewest steps to target)",
           ylim=(table["best_lr"].min() / 2, table["best_lr"].max() * 2))
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, "The rate with the fewest steps to target at each batch size (the grid's resolution: a factor of 2)."


REPORT_FIGURES = [
    ("Convergence", convergence),
    ("Time to target", time_to_target),
    ("Learning-rate sensitivity", lr_sensitivity),
    ("Bias and variance of w", bias_variance),
    ("Bias and variance of predictions", bias_variance_predictions),
    ("Heatmap: final w error", heatmap),
    ("Wall time", wall_time),
    ("Double descent", double_descent),
    ("Conditioning", conditioning),
    ("Batch-size scaling", batch_scaling),
    ("Best rate against batch size", best_rate_by_batch),
]
