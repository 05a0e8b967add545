"""Models of y = X w + b: three gradient-trained ones and two solvers.

Every gradient model has the same face for the training loop: `step(X, y)` does one
optimizer step and returns the batch loss as a 0-dim tensor (still on the device),
`loss(X, y)` evaluates without training, `params()` returns (w, b).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from linreg_lab.analysis import least_squares
from linreg_lab.config import ClosedFormConfig, GradientModelConfig, GridConfig, Init, Loss, Reduction
from linreg_lab.optimizers import OptimizerConfig, build_torch_optimizer, build_update


def loss_scale(loss: Loss) -> float:
    """The constant c in c * (y_hat - y)^2."""
    return 0.5 if loss is Loss.half_mse else 1.0


def mean_loss(y_hat: torch.Tensor, y: torch.Tensor, loss: Loss) -> torch.Tensor:
    """The per-sample loss averaged over the batch: what `train/loss` and `test/loss` report."""
    return loss_scale(loss) * (y_hat - y).square().mean()


def objective(y_hat: torch.Tensor, y: torch.Tensor, cfg: GradientModelConfig) -> torch.Tensor:
    """The loss the optimizer follows: mean or sum over the batch, as configured."""
    sq = (y_hat - y).square()
    return loss_scale(cfg.loss) * (sq.mean() if cfg.reduction is Reduction.mean else sq.sum())


def _reported(obj: torch.Tensor, m: int, cfg: GradientModelConfig) -> torch.Tensor:
    return obj.detach() / m if cfg.reduction is Reduction.sum else obj.detach()


class LinearModel:
    """nn.Linear + autograd + torch.optim (also the no-intercept variant, bias=False)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, cfg: GradientModelConfig, lr: float, opt: OptimizerConfig):
        self.cfg = cfg
        self.net = torch.nn.Linear(len(w), 1, bias=cfg.fit_intercept, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            self.net.weight.copy_(w.view(1, -1))
            if cfg.fit_intercept:
                self.net.bias.copy_(b.view(1))
        self.opt = build_torch_optimizer(self.net.parameters(), lr, opt)

    def step(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        obj = objective(self.net(X).squeeze(-1), y, self.cfg)
        obj.backward()
        self.opt.step()
        return _reported(obj, len(y), self.cfg)

    @torch.no_grad()
    def loss(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mean_loss(self.net(X).squeeze(-1), y, self.cfg.loss)

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.net.weight.detach().view(-1)
        b = self.net.bias.detach()[0] if self.cfg.fit_intercept else torch.zeros((), dtype=w.dtype, device=w.device)
        return w.clone(), b.clone()


class ScratchModel:
    """Raw tensors w and b with autograd, and a hand-written update (d2l's linreg + sgd)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, cfg: GradientModelConfig, lr: float, opt: OptimizerConfig):
        self.cfg = cfg
        self.w = w.clone().requires_grad_(True)
        self.b = b.clone().requires_grad_(cfg.fit_intercept)
        self.update = build_update(lr, opt)

    def step(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        obj = objective(X @ self.w + self.b, y, self.cfg)
        obj.backward()
        with torch.no_grad():
            self.update(0, self.w, self.w.grad)
            self.w.grad = None
            if self.cfg.fit_intercept:
                self.update(1, self.b, self.b.grad)
                self.b.grad = None
        return _reported(obj, len(y), self.cfg)

    @torch.no_grad()
    def loss(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mean_loss(X @ self.w + self.b, y, self.cfg.loss)

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.w.detach().clone(), self.b.detach().clone()


class ManualModel:
    """Hand-derived gradients, no autograd: grad_w = k X^T r, grad_b = k sum(r), r = X w + b - y."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, cfg: GradientModelConfig, lr: float, opt: OptimizerConfig):
        self.cfg = cfg
        self.w, self.b = w.clone(), b.clone()
        self.update = build_update(lr, opt)

    def gradients(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (objective, grad_w, grad_b) of the configured loss, derived by hand."""
        r = X @ self.w + self.b - y
        c = loss_scale(self.cfg.loss)
        mean = self.cfg.reduction is Reduction.mean
        k = 2 * c / len(y) if mean else 2 * c
        obj = c * (r.square().mean() if mean else r.square().sum())
        return obj, k * (X.T @ r), k * r.sum()

    def step(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        obj, grad_w, grad_b = self.gradients(X, y)
        self.update(0, self.w, grad_w)
        if self.cfg.fit_intercept:
            self.update(1, self.b, grad_b)
        return _reported(obj, len(y), self.cfg)

    def loss(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mean_loss(X @ self.w + self.b, y, self.cfg.loss)

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.w.clone(), self.b.clone()


GRADIENT_MODELS: dict[str, Callable] = {
    "linear": LinearModel,
    "no_intercept": LinearModel,
    "scratch": ScratchModel,
    "manual": ManualModel,
}


def build_model(w: torch.Tensor, b: torch.Tensor, cfg: GradientModelConfig, lr: float, opt: OptimizerConfig):
    """Gradient model named by cfg.name, starting from (w, b)."""
    return GRADIENT_MODELS[cfg.name](w, b, cfg, lr, opt)


@dataclass
class GridResult:
    """The grid of w values tried, the cost of each, and the best (w, b)."""

    grid: torch.Tensor  # (G, d)
    costs: torch.Tensor  # (G,)
    w: torch.Tensor
    b: torch.Tensor


def grid_values(cfg: GridConfig) -> torch.Tensor:
    """w_low, w_low + w_step, ..., w_high (inclusive, without float drift)."""
    count = int(round((cfg.w_high - cfg.w_low) / cfg.w_step)) + 1
    return cfg.w_low + cfg.w_step * torch.arange(count, dtype=torch.float64)


def grid_search(X: torch.Tensor, y: torch.Tensor, cfg: GridConfig) -> GridResult:
    """Evaluate the loss at every grid point (every feature over the same values) and keep the best."""
    X, y = X.double().cpu(), y.double().cpu()
    axes = [grid_values(cfg)] * X.shape[1]
    grid = torch.cartesian_prod(*axes).view(-1, X.shape[1])
    residual = X @ grid.T - y[:, None]  # (n, G)
    b = -residual.mean(0) if cfg.fit_intercept else torch.zeros(len(grid), dtype=torch.float64)
    costs = loss_scale(cfg.loss) * (residual + b).square().mean(0)
    best = int(torch.argmin(costs))
    return GridResult(grid, costs, grid[best], b[best])


def closed_form(X: torch.Tensor, y: torch.Tensor, cfg: ClosedFormConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The least-squares (w, b) of this data: no optimizer at all."""
    return least_squares(X, y, cfg.fit_intercept)


def init_params(cfg: GradientModelConfig, d: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial (w, b) from the init generator, the same for every model so runs compare fairly."""
    gen = torch.Generator().manual_seed(seed)
    b = torch.zeros((), dtype=dtype)
    if cfg.init is Init.normal:
        return cfg.init_scale * torch.randn(d, generator=gen, dtype=dtype), b
    if cfg.init is Init.uniform:
        return cfg.init_scale * torch.rand(d, generator=gen, dtype=dtype), b
    if cfg.init is Init.zeros:
        return torch.zeros(d, dtype=dtype), b
    bound = d**-0.5  # nn.Linear's reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both
    w = (2 * torch.rand(d, generator=gen, dtype=dtype) - 1) * bound
    b = (2 * torch.rand((), generator=gen, dtype=dtype) - 1) * bound
    return w, b if cfg.fit_intercept else torch.zeros((), dtype=dtype)
