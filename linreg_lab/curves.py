"""Which points of a curve go where: every point in the run's `curves.npz` artifact, at most a hundred in MLflow.

A job's histories (metric key -> (steps, values)) are kept whole in `curves.npz`, one 2 x n array per
key (row 0 the steps, row 1 the values, NaN and inf included). MLflow gets each history's finite
points, thinned to at most LOGGED_POINTS for the training loss (the curve MLflow's UI is opened for) and a
grid's cost, SIDE_POINTS for the percentile bands and the evaluations: half evenly spaced, half
log-spaced (dense at the start, where a loss falls fastest), the first and last always kept. MLflow's UI
samples long histories anyway; what it holds is `logged(...)` of the artifact, so either can be read back as the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linreg_lab.contract import FULL_LOSS, TEST_LOSS, loss_percentile

LOGGED_POINTS = 100
SIDE_POINTS = 15  # each point is a row MLflow writes: a sweep's store write is its floor (the bands are guides)
SIDE_CURVES = frozenset({loss_percentile(10), loss_percentile(90), TEST_LOSS, FULL_LOSS})


def points_for(key: str) -> int:
    """How many points of history `key` MLflow holds at most: SIDE_POINTS of the training loss's percentile bands
    and of the evaluations, LOGGED_POINTS of any other (the training loss, a grid's cost)."""
    return SIDE_POINTS if key in SIDE_CURVES else LOGGED_POINTS


def thinned(count: int, points: int = LOGGED_POINTS) -> np.ndarray:
    """Indices of at most `points` of `count` points: half linearly, half log-spaced, first and last kept."""
    if count <= points:
        return np.arange(count)
    half = points // 2
    linear = np.linspace(0, count - 1, half)
    log = np.geomspace(1, count, half) - 1
    return np.unique(np.r_[linear, log].round().astype(np.int64))


def logged(steps, values, points: int = LOGGED_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """What MLflow holds of a history: its finite points (NaN/inf never reach the store), thinned to `points`
    (points_for(key) of the history's key)."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    steps, values = np.asarray(steps, dtype=np.int64)[ok], values[ok]
    keep = thinned(len(steps), points)
    return steps[keep], values[keep]


def save(path: Path, histories: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Every point of every history, as `curves.npz` holds them."""
    np.savez(path, **{key: np.vstack([np.asarray(s, dtype=np.float64), np.asarray(v, dtype=np.float64)])
                      for key, (s, v) in histories.items()})


def load(path: Path, keys: list[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """key -> (steps, values) from a `curves.npz` file (only `keys` when given, those it has)."""
    with np.load(path) as npz:  # each npz[key] reads its array from the zip again: once per key
        arrays = {key: npz[key] for key in npz.files if keys is None or key in keys}
    return {key: (a[0].astype(np.int64), a[1]) for key, a in arrays.items()}
