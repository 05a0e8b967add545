"""The one training loop every gradient model and optimizer goes through.

The loop works a chunk of steps at a time: it gathers the chunk's batches in one indexing
operation, each step writes its record into a preallocated slot, and the chunk's losses
come from those records in one operation. Evaluations snapshot the parameters on the
device and are all computed at the end. The host looks at the device once per chunk (to
catch divergence and draw progress), never once per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from linreg_lab.analysis import design
from linreg_lab.data import Dataset
from linreg_lab.models import GradientModel, loss_scale

CHUNK = 500  # steps between host syncs: divergence check and progress bar
RECORD_BUDGET = 1 << 22  # elements of a chunk's per-step records; large batches get shorter chunks
STOP_CHUNK = 50  # with stop_below, the most steps trained past the evaluation that met it
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


LOG_DENSE = 64  # log spacing: every step up to here, then steps growing by 1/LOG_DENSE of themselves


def evaluation_steps(steps: int, every: int, log: bool = False) -> list[int]:
    """0, every, 2 every, ..., and always the last step; with `log`, every step up to LOG_DENSE, then each
    ceil((1 + 1/LOG_DENSE) times) the one before (a time to target read to within 1.6% at any scale)."""
    if not log:
        return sorted(set(range(0, steps + 1, every)) | {steps})
    out = list(range(min(steps, LOG_DENSE) + 1))
    while out[-1] < steps:
        out.append(min(steps, -(-out[-1] * (LOG_DENSE + 1) // LOG_DENSE)))
    return out


def gather(rows: torch.Tensor, idx: torch.Tensor, out: torch.Tensor) -> None:
    """Rows (R, n, k) picked by idx (L, R, m) into out (L, R, m, k), in one index_select into a reused
    buffer (advanced indexing, rows[r, i], would allocate a new tensor every chunk)."""
    R, n, k = rows.shape
    offsets = torch.arange(R, device=rows.device)[:, None] * n
    torch.index_select(rows.view(R * n, k), 0, (idx + offsets).reshape(-1), out=out.view(-1, k))


def eval_dtype(device: torch.device) -> torch.dtype:
    """float64 for evaluations, except on mps, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


class QuadraticLoss:
    """c * mean((x.w + b - y)^2) over a fixed set, in float64. With a = (x, 1) and theta = (w, b), a set
    of more rows than parameters is kept as its sufficient statistics, mean r^2 = theta' G theta - 2 theta' h
    + s, so an evaluation costs O(R p^2) whatever its size; a set of fewer rows than parameters (p > n:
    past interpolation) is kept as it is, its residuals costing O(R n p), the less."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, scale: float):
        self.dtype = eval_dtype(X.device)
        A = design(X, fit_intercept=True).to(X.device, self.dtype)  # (R, n, p); (1, n, p) for a shared set
        y = y.to(self.dtype).reshape(A.shape[0], -1, 1)
        n, p = A.shape[1:]
        self.rows = (A, y.squeeze(-1)) if n < p else None
        if self.rows is None:
            self.G, self.h, self.s = A.mT @ A / n, (A.mT @ y).squeeze(-1) / n, y.square().mean((1, 2))
        self.scale = scale

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """Losses (K, R) of parameter snapshots theta (K, R, p) = (w, b)."""
        theta = theta.to(self.dtype)
        if self.rows is not None:
            A, y = self.rows
            residual = (theta.transpose(0, 1) @ A.mT).transpose(0, 1) - y  # (K, R, n)
            return self.scale * residual.square().mean(-1)
        quad = ((theta.transpose(0, 1) @ self.G).transpose(0, 1) * theta).sum(-1)  # one (K, p) @ (p, p) per replicate
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


def train(model: GradientModel, data: Dataset, idx: torch.Tensor | None, steps: int,
          eval_every: int, progress: Callable[[int], object] | None = None,
          stop_below: float | None = None, log_evals: bool = False) -> TrainResult:
    """Run `steps` optimizer steps on all replicates, evaluating every `eval_every` (or log-spaced: `log_evals`,
    evaluation_steps); stop early
    once every replicate has diverged, or on Ctrl-C/SIGTERM (keeping what was done), or, with
    `stop_below`, at the first evaluation whose mean full-data loss over the finite replicates is at or
    below it (the result is then the model as evaluated there).

    `progress(steps)`, when given, is called once the run has taken PROGRESS_AFTER_S and returns a bar
    with tqdm's `update(n)` and `close()`; the loop moves it once per chunk."""
    device, (R, n, d) = data.X.device, data.X.shape
    rows = data.memo(("rows", type(model).__name__, getattr(model.cfg, "fit_intercept", None)),
                     lambda: model.rows(data.X, data.y))
    m = n if idx is None else idx.shape[-1]
    chunk = max(1, min(CHUNK, RECORD_BUDGET // (R * m)))
    if stop_below is not None:  # checked once a chunk: the steps past the target within one are thrown away
        chunk = min(chunk, STOP_CHUNK if log_evals else max(eval_every, STOP_CHUNK))
    scale = loss_scale(model.cfg.loss)
    full = data.memo(("full_loss", scale), lambda: QuadraticLoss(data.X, data.y, scale))
    checked, stopped = 0, None
    losses = torch.empty(steps, R, device=device, dtype=data.X.dtype)
    evals = evaluation_steps(steps, eval_every, log_evals) + [-1]  # -1: no evaluation left
    thetas = torch.empty(len(evals) - 1, R, d + 1, device=device, dtype=eval_dtype(device))
    diverged_at = np.zeros(R, dtype=np.int64)
    k, interrupted, done, begun, bar = 0, None, 0, 0, None
    start = time.perf_counter()
    # the chunk's rows live in one buffer, refilled each chunk; the per-step views of it are made once
    part = rows.expand(chunk, -1, -1, -1) if idx is None else rows.new_empty(chunk, R, m, rows.shape[-1])
    batches = model.batches(part)
    try:
        for begun in range(0, steps, chunk):
            L = min(chunk, steps - begun)
            if idx is not None:
                gather(rows, idx[begun:begun + L], part[:L])
            for i, batch in enumerate(batches[:L]):
                done = begun + i
                if done == evals[k]:  # evaluation after `done` steps
                    model.snapshot(thetas[k])
                    k += 1
                model.step(batch)
            done = begun + L
            losses[begun:done] = model.losses(L)
            mark_divergence(losses, begun, done, model, diverged_at)
            if diverged_at.all():
                break
            if stop_below is not None:
                if done == evals[k]:
                    model.snapshot(thetas[k])
                    k += 1
                stopped, checked = first_below(full(thetas[checked:k]), stop_below, checked), k
                if stopped is not None:
                    k, done = stopped + 1, evals[stopped]
                    break
            if bar is None and progress is not None and time.perf_counter() - start > PROGRESS_AFTER_S:
                bar, shown = progress(steps), 0
            if bar is not None:
                bar.update(done - shown)
                shown = done
        if done == steps == evals[k]:
            model.snapshot(thetas[k])
            k += 1
    except KeyboardInterrupt as err:  # keep what was computed: the job logs it, then ends KILLED
        interrupted = err
        if done > begun:
            losses[begun:done] = model.losses(done - begun)
            mark_divergence(losses, begun, done, model, diverged_at)
    finally:
        if bar is not None:
            bar.close()
    test = QuadraticLoss(data.X_test, data.y_test, loss_scale(model.cfg.loss))(thetas[:k])
    full_losses = full(thetas[:k])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    w, b = model.params()
    if stopped is not None:  # the model as it was at the evaluation that met the target
        w, b = thetas[stopped, :, :-1].to(w.dtype), thetas[stopped, :, -1].to(b.dtype)
    diverged_at[diverged_at > done] = 0  # a replicate that broke after the stop did not, in the run kept
    return collect(losses[:done], test, full_losses, evals[:k], (w, b), seconds, diverged_at, interrupted)


def first_below(losses: torch.Tensor, level: float, offset: int) -> int | None:
    """Index (plus offset) of the first evaluation whose mean loss over the finite replicates is <= level."""
    if not len(losses):
        return None
    finite = torch.isfinite(losses)
    mean = torch.where(finite, losses, 0.0).sum(1) / finite.sum(1).clamp_min(1)
    hit = torch.nonzero(finite.any(1) & (mean <= level))
    return offset + int(hit[0, 0]) if len(hit) else None


def collect(losses, test, full, evals, params, seconds, diverged_at, interrupted) -> TrainResult:
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
    w, b = params
    return TrainResult(train_np[:last], eval_steps, test_np, full_np, w.cpu(), b.cpu(), seconds, diverged_at,
                       interrupted)
