"""Models of y = X w + b: three gradient-trained ones and two solvers, all over R replicates.

Parameters are batched: w is (R, d) and b is (R,). Every gradient model has the same face
for the training loop (`GradientModel`): the training data become per-sample `rows`
(R, n, k); the loop gathers a chunk of steps' rows at once, (L, R, m, k), and the model cuts
it into per-step `batches`, each with a slot of a preallocated chunk buffer; `step(batch)`
does one optimizer step on all replicates and writes what its loss is computed from into
that slot, so nothing is allocated or read back per step; `losses(L)` turns the first L
slots into batch losses (L, R). The optimizers update each element on its own, so one
batched step is exactly R separate ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from linreg_lab.analysis import least_squares
from linreg_lab.optimizers import OptimizerConfig, build_torch_optimizer, build_update
from linreg_lab.schema import ClosedFormConfig, GradientModelConfig, GridConfig, Init, Loss, Reduction, SGDConfig


def loss_scale(loss: Loss) -> float:
    """The constant c in c * (y_hat - y)^2."""
    return 0.5 if loss is Loss.half_mse else 1.0


def affine(X: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Predictions (R, m) for inputs X (R, m, d), or X (m, d) shared by every replicate."""
    if X.dim() == 2:
        return w @ X.T + b[:, None]
    return torch.bmm(X, w.unsqueeze(-1)).squeeze(-1) + b[:, None]


def mean_loss(y_hat: torch.Tensor, y: torch.Tensor, loss: Loss) -> torch.Tensor:
    """The per-sample loss averaged over the batch, per replicate: what `train/loss` reports."""
    return loss_scale(loss) * (y_hat - y).square().mean(-1)


def objective(y_hat: torch.Tensor, y: torch.Tensor, cfg: GradientModelConfig) -> torch.Tensor:
    """The loss the optimizer follows, per replicate: mean or sum over the batch, as configured."""
    sq = (y_hat - y).square()
    return loss_scale(cfg.loss) * (sq.mean(-1) if cfg.reduction is Reduction.mean else sq.sum(-1))


def _reported(obj: torch.Tensor, m: int, cfg: GradientModelConfig) -> torch.Tensor:
    return obj.detach() / m if cfg.reduction is Reduction.sum else obj.detach()


class GradientModel:
    """The loop's face of a model; this base serves the autograd models, whose record is the loss itself."""

    cfg: GradientModelConfig
    records: torch.Tensor  # the current chunk's per-step records

    def rows(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample rows (R, n, d + 1): x then y."""
        return torch.cat([X, y.unsqueeze(-1)], -1)

    def batches(self, chunk: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """(X (R, m, d), y (R, m), loss slot (R,)) of each step of a chunk of rows (L, R, m, d + 1)."""
        self.records = chunk.new_empty(chunk.shape[:2])
        return list(zip(chunk[..., :-1].unbind(0), chunk[..., -1].unbind(0), self.records.unbind(0)))

    def losses(self, steps: int) -> torch.Tensor:
        """Batch losses (steps, R) of the current chunk's first steps."""
        return self.records[:steps]

    def step(self, batch: tuple[torch.Tensor, ...]) -> None:
        X, y, loss = batch
        loss.copy_(self.loss_step(X, y))

    def loss_step(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step; returns the R batch losses."""
        raise NotImplementedError

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w (R, d), b (R,)), copies."""
        raise NotImplementedError

    def snapshot(self, out: torch.Tensor) -> None:
        """Write (w, b) into out (R, d + 1), on the device, for a later evaluation."""
        w, b = self.params()
        out[:, :-1].copy_(w)
        out[:, -1].copy_(b)


class ReplicatedLinear(torch.nn.Module):
    """R independent nn.Linear(d, 1) layers as one module: weight (R, d), bias (R,)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, fit_intercept: bool):
        super().__init__()
        self.weight = torch.nn.Parameter(w.clone())
        self.bias = torch.nn.Parameter(b.clone()) if fit_intercept else None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        b = self.bias if self.bias is not None else torch.zeros(len(self.weight), dtype=X.dtype, device=X.device)
        return affine(X, self.weight, b)


class LinearModel(GradientModel):
    """nn.Linear + autograd + torch.optim (R independent layers when replicated; bias=False without intercept)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, cfg: GradientModelConfig, lr: float, opt: OptimizerConfig):
        self.cfg, self.replicated = cfg, len(w) > 1
        if self.replicated:
            self.net = ReplicatedLinear(w, b, cfg.fit_intercept)
        else:
            self.net = torch.nn.Linear(w.shape[1], 1, bias=cfg.fit_intercept, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                self.net.weight.copy_(w)
                if cfg.fit_intercept:
                    self.net.bias.copy_(b)
        self.opt = build_torch_optimizer(self.net.parameters(), lr, opt)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.replicated:
            return self.net(X)
        out = self.net(X).squeeze(-1)  # (1, m) from (1, m, d); (m,) from (m, d)
        return out if X.dim() == 3 else out.unsqueeze(0)

    def loss_step(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        obj = objective(self.forward(X), y, self.cfg)
        obj.sum().backward()  # replicates share no parameter: each gets its own gradient
        self.opt.step()
        return _reported(obj, y.shape[-1], self.cfg)

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.net.weight.detach().view(-1, self.net.weight.shape[-1]).clone()
        bias = self.net.bias
        b = bias.detach().view(-1).clone() if bias is not None else torch.zeros(len(w), dtype=w.dtype, device=w.device)
        return w, b


class ScratchModel(GradientModel):
    """Raw tensors w and b with autograd, and a hand-written update (d2l's linreg + sgd)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, cfg: GradientModelConfig, lr: float, opt: OptimizerConfig):
        self.cfg = cfg
        self.w = w.clone().requires_grad_(True)
        self.b = b.clone().requires_grad_(cfg.fit_intercept)
        self.update = build_update(lr, opt)

    def loss_step(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        obj = objective(affine(X, self.w, self.b), y, self.cfg)
        obj.sum().backward()
        with torch.no_grad():
            self.update(0, self.w, self.w.grad)
            self.w.grad = None
            if self.cfg.fit_intercept:
                self.update(1, self.b, self.b.grad)
                self.b.grad = None
        return _reported(obj, y.shape[-1], self.cfg)

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.w.detach().clone(), self.b.detach().clone()


class ManualModel(GradientModel):
    """Hand-derived gradients, no autograd. A row is a = (x, 1, y) and theta = (w, b, -1), so the
    residuals r = a . theta = x.w + b - y of a whole batch are one batched product, and the
    gradient k r^T A with A = [X, 1] another (r read as a row: the same memory); plain SGD folds
    its update into that second product, the other optimizers update the view of theta that
    holds (w, b) (the -1 never moves). A step's record is its residuals: the
    chunk's losses come from them in one operation."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, cfg: GradientModelConfig, lr: float, opt: OptimizerConfig):
        self.cfg, self.lr, (R, self.d) = cfg, lr, w.shape
        self.p = self.d + int(cfg.fit_intercept)  # the parameters the optimizer moves
        columns = [w, b[:, None]] if cfg.fit_intercept else [w]
        self.theta = torch.cat([*columns, -torch.ones_like(b)[:, None]], 1).unsqueeze(-1)  # (R, p + 1, 1)
        self.free = self.theta.view(R, 1, self.p + 1)[:, :, :self.p]  # a row view: updates write into theta
        full_grad = torch.zeros_like(self.theta).view(R, 1, self.p + 1)  # the -1's entry stays 0
        self.grad = full_grad[:, :, :self.p]
        # plain SGD: theta -= lr k r^T A in one product
        self.fused = isinstance(opt, SGDConfig) and not opt.momentum and not opt.weight_decay
        update = build_update(lr, opt)  # on the parameters' view: the -1 and its zero gradient stay out
        self.update = lambda: update(0, self.free, self.grad)
        self.k = 0.0

    def rows(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(x, 1, y) per sample, (R, n, p + 1)."""
        ones = [torch.ones_like(y).unsqueeze(-1)] if self.cfg.fit_intercept else []
        return torch.cat([X, *ones, y.unsqueeze(-1)], -1)

    def batches(self, chunk: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """(rows (R, m, p + 1), A (R, m, p), r (R, m, 1), the same r as a row (R, 1, m)) of each step."""
        L, R, m, _ = chunk.shape
        c = loss_scale(self.cfg.loss)
        self.k = 2 * c / m if self.cfg.reduction is Reduction.mean else 2 * c  # d objective / d r
        self.records = chunk.new_empty(L, R, m, 1)
        return list(zip(chunk.unbind(0), chunk[..., :self.p].unbind(0), self.records.unbind(0),
                        self.records.view(L, R, 1, m).unbind(0)))

    def losses(self, steps: int) -> torch.Tensor:
        """c * mean(r^2) per step and replicate: the mean objective, for either reduction."""
        return loss_scale(self.cfg.loss) * self.records[:steps].square().mean((2, 3))

    def gradients(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Residuals into the batch's slot and the gradient (R, 1, p) of the objective, derived by hand."""
        rows, A, r, r_row = batch
        torch.bmm(rows, self.theta, out=r)  # x.w + b - y
        return self.grad.baddbmm_(r_row, A, beta=0, alpha=self.k)

    def step(self, batch: tuple[torch.Tensor, ...]) -> None:
        if self.fused:
            rows, A, r, r_row = batch
            torch.bmm(rows, self.theta, out=r)
            self.free.baddbmm_(r_row, A, alpha=-self.lr * self.k)
        else:
            self.gradients(batch)
            self.update()

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.theta[:, :self.d, 0].clone()
        b = self.theta[:, self.d, 0].clone() if self.cfg.fit_intercept else torch.zeros_like(self.theta[:, 0, 0])
        return w, b

    def snapshot(self, out: torch.Tensor) -> None:
        if self.cfg.fit_intercept:
            out.copy_(self.free.squeeze(1))
        else:
            super().snapshot(out)


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
    """The grid of w values tried, the cost of each (per replicate), and the best (w, b) of each."""

    grid: torch.Tensor  # (G, d)
    costs: torch.Tensor  # (R, G)
    w: torch.Tensor  # (R, d)
    b: torch.Tensor  # (R,)


def grid_values(cfg: GridConfig) -> torch.Tensor:
    """w_low, w_low + w_step, ..., w_high (inclusive, without float drift)."""
    count = int(round((cfg.w_high - cfg.w_low) / cfg.w_step)) + 1
    return cfg.w_low + cfg.w_step * torch.arange(count, dtype=torch.float64)


def grid_search(X: torch.Tensor, y: torch.Tensor, cfg: GridConfig) -> GridResult:
    """Evaluate the loss at every grid point (every feature over the same values) and keep the best."""
    X, y = X.double().cpu(), y.double().cpu()
    d = X.shape[-1]
    grid = torch.cartesian_prod(*[grid_values(cfg)] * d).view(-1, d)
    residual = X @ grid.T - y.unsqueeze(-1)  # (R, n, G)
    b = -residual.mean(1) if cfg.fit_intercept else torch.zeros(residual.shape[0], len(grid), dtype=torch.float64)
    costs = loss_scale(cfg.loss) * (residual + b.unsqueeze(1)).square().mean(1)  # (R, G)
    best = torch.argmin(costs, 1)
    return GridResult(grid, costs, grid[best], b.gather(1, best[:, None]).squeeze(1))


def closed_form(X: torch.Tensor, y: torch.Tensor, cfg: ClosedFormConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The least-squares (ridge, with weight_decay) (w, b) of each replicate's data: no optimizer at all."""
    n = X.shape[-2]
    # loss c * mean(r^2) + wd / 2 * |theta|^2 is least squares with penalty n * wd / (2 c) on every parameter
    penalty = n * cfg.weight_decay / (2 * loss_scale(cfg.loss))
    return least_squares(X, y, cfg.fit_intercept, penalty)


def init_params(cfg: GradientModelConfig, d: int, seeds: list[int],
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial (w, b) of each replicate, the same for every model so runs compare fairly."""
    pairs = [init_one(cfg, d, seed, dtype) for seed in seeds]
    return torch.stack([w for w, _ in pairs]), torch.stack([b for _, b in pairs])


def init_one(cfg: GradientModelConfig, d: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial (w, b) from one init seed."""
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
