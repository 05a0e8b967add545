"""Every figure the harness draws. Imported lazily: a run that draws nothing pays nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

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
