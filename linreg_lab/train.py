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

from linreg_lab.data import Dataset

CHUNK = 500  # steps between host syncs: divergence check and progress bar
PROGRESS_AFTER_S = 2.0  # jobs shorter than this draw no progress bar


@dataclass
class TrainResult:
    """What came back from the device at the end of training."""

    train_loss: np.ndarray  # batch loss of step 1..n (n = steps done before any divergence)
    eval_steps: np.ndarray  # steps (0 = before training) at which the model was evaluated
    test_loss: np.ndarray
    full_loss: np.ndarray  # loss on the whole training set at the same steps (empty if streaming)
    w: torch.Tensor
    b: torch.Tensor
    seconds: float
    diverged_step: int | None  # first step whose loss or parameters were not finite
    interrupted: KeyboardInterrupt | None = None  # Ctrl-C or SIGTERM stopped the loop early


def evaluation_steps(steps: int, every: int) -> list[int]:
    """0, every, 2 every, ..., and always the last step."""
    return sorted(set(range(0, steps + 1, every)) | {steps})


def batch_at(data: Dataset, idx: torch.Tensor | None, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The t-th batch (0-based); the whole training set when idx is None."""
    if idx is None:
        return data.X, data.y
    rows = idx[t]
    return data.X[rows], data.y[rows]


def first_bad_step(losses: torch.Tensor, start: int, end: int, model) -> int | None:
    """1-based step of the first non-finite loss in [start, end), or end if only the parameters broke."""
    bad = ~torch.isfinite(losses[start:end])
    if bool(bad.any()):  # host sync, once per chunk
        return start + int(bad.nonzero()[0]) + 1
    w, b = model.params()
    return None if bool(torch.isfinite(w).all() and torch.isfinite(b)) else end


def show_progress(done: int, steps: int, elapsed: float) -> None:
    """One-line progress bar with an ETA, redrawn in place on stderr."""
    frac = done / steps
    eta = elapsed / frac - elapsed if frac else 0.0
    bar = "#" * int(30 * frac)
    sys.stderr.write(f"\r  [{bar:<30}] {done}/{steps} steps, {elapsed:.0f}s, eta {eta:.0f}s")
    if done == steps:
        sys.stderr.write("\n")
    sys.stderr.flush()


def train(model, data: Dataset, idx: torch.Tensor | None, steps: int, eval_every: int, streaming: bool) -> TrainResult:
    """Run `steps` optimizer steps, evaluating every `eval_every`; stop early on divergence."""
    device = data.X.device
    losses = torch.empty(steps, device=device, dtype=data.X.dtype)
    evals = evaluation_steps(steps, eval_every)
    test = torch.empty(len(evals), device=device, dtype=data.X.dtype)
    full = torch.empty(len(evals), device=device, dtype=data.X.dtype)
    k, diverged, interrupted, done = 0, None, None, 0
    start = drawn = time.perf_counter()
    try:
        for t in range(steps + 1):
            if t == evals[k]:  # evaluation after t steps
                test[k] = model.loss(data.X_test, data.y_test)
                if not streaming:  # a stream has no fixed training set to score
                    full[k] = model.loss(data.X, data.y)
                k += 1
            if t == steps:
                break
            X, y = batch_at(data, idx, t)
            losses[t] = model.step(X, y)
            done = t + 1
            if done % CHUNK == 0 or done == steps:
                diverged = first_bad_step(losses, (t // CHUNK) * CHUNK, done, model)
                elapsed = time.perf_counter() - start
                if diverged is not None:
                    break
                if elapsed > PROGRESS_AFTER_S and (start + elapsed - drawn > 0.5 or done == steps):
                    show_progress(done, steps, elapsed)
                    drawn = start + elapsed
    except KeyboardInterrupt as err:  # keep what was computed: the job logs it, then ends KILLED
        interrupted = err
        diverged = first_bad_step(losses, (done // CHUNK) * CHUNK, done, model) if done else None
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    n_ok = done if diverged is None else diverged - 1
    test_np, full_np = test[:k].cpu().numpy(), full[:k].cpu().numpy()
    keep = np.isfinite(test_np) & (np.array(evals[:k]) < (diverged or done + 1))
    w, b = model.params()
    return TrainResult(
        train_loss=losses[:n_ok].cpu().numpy(),
        eval_steps=np.array(evals[:k])[keep],
        test_loss=test_np[keep],
        full_loss=np.empty(0) if streaming else full_np[keep],
        w=w.cpu(), b=b.cpu(), seconds=seconds, diverged_step=diverged, interrupted=interrupted,
    )
