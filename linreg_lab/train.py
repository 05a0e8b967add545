"""The one training loop every gradient model and optimizer goes through.

Losses are written into preallocated device tensors; the host looks at them once per
chunk of steps (to catch divergence and draw progress), never once per step.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from linreg_lab.analysis import design
from linreg_lab.data import Dataset
from linreg_lab.models import loss_scale

CHUNK = 500  # steps between host syncs: divergence check and progress bar
PROGRESS_AFTER_S = 2.0  # jobs shorter than this draw no progress bar


@dataclass
class TrainResult:
    """What came back from the device at the end of training, per replicate (NaN after divergence)."""

    train_loss: np.ndarray  # (steps done, R): batch loss of step 1..n
    eval_steps: np.ndarray  # (k,) steps (0 = before training) at which the model was evaluated
    test_loss: np.ndarray  # (k, R)
    full_loss: np.ndarray  # (k, R): loss on each replicate's whole training set
    w: torch.Tensor  # (R, d)
    b: torch.Tensor  # (R,)
    seconds: float
    diverged_at: np.ndarray  # (R,) first step whose loss or parameters were not finite; 0 = never
    interrupted: KeyboardInterrupt | None = None  # Ctrl-C or SIGTERM stopped the loop early


def evaluation_steps(steps: int, every: int) -> list[int]:
    """0, every, 2 every, ..., and always the last step."""
    return sorted(set(range(0, steps + 1, every)) | {steps})


class Batches:
    """Every replicate's t-th batch, (R, m, d) and (R, m): the rows of CHUNK steps are gathered
    in one indexing operation, and each step takes a slice (a view) of them."""

    def __init__(self, data: Dataset, idx: torch.Tensor | None):
        self.data, self.idx, self.start = data, idx, -2 * CHUNK  # no chunk gathered yet
        self.rows = torch.arange(data.X.shape[0], device=data.X.device)[:, None]

    def __call__(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.idx is None:  # full batch
            return self.data.X, self.data.y
        m = self.idx.shape[-1]
        if not self.start <= t < self.start + CHUNK:
            self.start = t
            cols = self.idx[t:t + CHUNK].transpose(0, 1).reshape(len(self.rows), -1)  # (R, L * m)
            R, n, d = self.data.X.shape
            flat = (self.rows * n + cols).reshape(-1)  # index_select on rows is ~5x faster than X[rows, cols]
            self.X = self.data.X.reshape(R * n, d).index_select(0, flat).view(R, -1, d)
            self.y = torch.gather(self.data.y, 1, cols)
        j = (t - self.start) * m
        return self.X[:, j:j + m], self.y[:, j:j + m]


def eval_dtype(device: torch.device) -> torch.dtype:
    """float64 for evaluations, except on mps, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


class QuadraticLoss:
    """c * mean((x.w + b - y)^2) over a fixed set, from its sufficient statistics in float64:
    with a = (x, 1) and theta = (w, b), mean r^2 = theta' G theta - 2 theta' h + s. An evaluation
    costs O(R p^2) instead of O(R n p), whatever the size of the set."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, scale: float):
        self.dtype = eval_dtype(X.device)
        A = design(X, fit_intercept=True).to(X.device, self.dtype)  # (R, n, p); (1, n, p) for a shared set
        y = y.to(self.dtype).reshape(A.shape[0], -1, 1)
        n = A.shape[1]
        self.G, self.h, self.s = A.mT @ A / n, (A.mT @ y).squeeze(-1) / n, y.square().mean((1, 2))
        self.scale = scale

    def __call__(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        theta = torch.cat([w.to(self.dtype), b.to(self.dtype)[:, None]], 1)  # (R, p)
        quad = ((theta.unsqueeze(1) @ self.G).squeeze(1) * theta).sum(-1)
        return self.scale * (quad - 2 * (theta * self.h).sum(-1) + self.s)


def mark_divergence(losses: torch.Tensor, start: int, end: int, model, diverged_at: np.ndarray) -> None:
    """Record, per replicate, the first step in [start, end) with a non-finite loss (or end, if only
    the parameters broke). One host sync per chunk of steps."""
    bad = ~torch.isfinite(losses[start:end])  # (L, R)
    w, b = model.params()
    broken = ~(torch.isfinite(w).all(1) & torch.isfinite(b))
    any_bad = (bad.any(0) | broken).cpu().numpy()
    if not any_bad.any():
        return
    first = (bad.int().argmax(0) + 1 + start).cpu().numpy()
    first = np.where(bad.any(0).cpu().numpy(), first, end)
    fresh = any_bad & (diverged_at == 0)
    diverged_at[fresh] = first[fresh]


def show_progress(done: int, steps: int, elapsed: float) -> None:
    """One-line progress bar with an ETA, redrawn in place on stderr."""
    frac = done / steps
    eta = elapsed / frac - elapsed if frac else 0.0
    bar = "#" * int(30 * frac)
    sys.stderr.write(f"\r  [{bar:<30}] {done}/{steps} steps, {elapsed:.0f}s, eta {eta:.0f}s")
    if done == steps:
        sys.stderr.write("\n")
    sys.stderr.flush()


def train(model, data: Dataset, idx: torch.Tensor | None, steps: int, eval_every: int) -> TrainResult:
    """Run `steps` optimizer steps on all replicates, evaluating every `eval_every`; stop early
    once every replicate has diverged, or on Ctrl-C/SIGTERM (keeping what was done)."""
    device, R = data.X.device, data.X.shape[0]
    batch_at = Batches(data, idx)
    scale = loss_scale(model.cfg.loss)
    test_loss, full_loss = QuadraticLoss(data.X_test, data.y_test, scale), QuadraticLoss(data.X, data.y, scale)
    losses = torch.empty(steps, R, device=device, dtype=data.X.dtype)
    evals = evaluation_steps(steps, eval_every)
    test = torch.empty(len(evals), R, device=device, dtype=eval_dtype(device))
    full = torch.empty(len(evals), R, device=device, dtype=eval_dtype(device))
    diverged_at = np.zeros(R, dtype=np.int64)
    k, interrupted, done = 0, None, 0
    start = drawn = time.perf_counter()
    try:
        for t in range(steps + 1):
            if t == evals[k]:  # evaluation after t steps
                w, b = model.params()
                test[k], full[k] = test_loss(w, b), full_loss(w, b)
                k += 1
            if t == steps:
                break
            X, y = batch_at(t)
            losses[t] = model.step(X, y)
            done = t + 1
            if done % CHUNK == 0 or done == steps:
                mark_divergence(losses, (t // CHUNK) * CHUNK, done, model, diverged_at)
                if diverged_at.all():
                    break
                elapsed = time.perf_counter() - start
                if elapsed > PROGRESS_AFTER_S and (start + elapsed - drawn > 0.5 or done == steps):
                    show_progress(done, steps, elapsed)
                    drawn = start + elapsed
    except KeyboardInterrupt as err:  # keep what was computed: the job logs it, then ends KILLED
        interrupted = err
        if done:
            mark_divergence(losses, (done - 1) // CHUNK * CHUNK, done, model, diverged_at)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return collect(losses[:done], test[:k], full[:k], evals[:k], model, seconds, diverged_at, interrupted)


def collect(losses, test, full, evals, model, seconds, diverged_at, interrupted) -> TrainResult:
    """Bring the results to the host once, blanking (NaN) every value at or after a replicate diverged."""
    end = np.where(diverged_at > 0, diverged_at, np.iinfo(np.int64).max)
    train_np = losses.cpu().double().numpy()
    steps = np.arange(1, len(train_np) + 1)[:, None]
    train_np[steps >= end] = np.nan
    eval_steps = np.array(evals, dtype=np.int64)
    late = eval_steps[:, None] >= end
    test_np, full_np = test.cpu().double().numpy(), full.cpu().double().numpy()
    test_np[late | ~np.isfinite(test_np)] = np.nan  # an overflowing evaluation is not a value
    full_np[late | ~np.isfinite(full_np)] = np.nan
    last = int(diverged_at.max()) - 1 if diverged_at.all() else len(train_np)  # drop steps no replicate survived
    w, b = model.params()
    return TrainResult(train_np[:last], eval_steps, test_np, full_np, w.cpu(), b.cpu(), seconds, diverged_at,
                       interrupted)
