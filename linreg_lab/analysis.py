"""The maths a run is scored with: the least-squares reference and the parameter errors."""

from __future__ import annotations

import torch


def least_squares(X: torch.Tensor, y: torch.Tensor, fit_intercept: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(w*, b*) minimizing ||X w + b - y||^2, in float64 on the CPU (b* = 0 without intercept)."""
    X, y = X.detach().double().cpu(), y.detach().double().cpu()
    A = torch.cat([X, torch.ones(len(X), 1, dtype=torch.float64)], 1) if fit_intercept else X
    coef = torch.linalg.lstsq(A, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    b = coef[-1] if fit_intercept else torch.zeros((), dtype=torch.float64)
    return coef[: X.shape[1]], b


def parameter_errors(w: torch.Tensor, b: torch.Tensor, true_w: list[float], true_b: float,
                     w_ols: torch.Tensor, b_ols: torch.Tensor) -> dict[str, float]:
    """Final metrics: errors against the truth and gaps to the least-squares fit (learned minus reference)."""
    w, b = w.detach().double().cpu(), b.detach().double().cpu()
    dw = w - torch.tensor(true_w, dtype=torch.float64)
    out = {"w_error/l2": float(dw.norm()), "b_error": float(b - true_b)}
    out.update({f"w_error/{i}": float(v) for i, v in enumerate(dw)})
    out["ols/w_gap_l2"] = float((w - w_ols).norm())
    out["ols/b_gap"] = float(b - b_ols)
    return out
