"""The four optimizers, as torch.optim objects and as hand-written updates of the same maths.

`build_torch_optimizer` serves the `linear` model. The hand-written `Update`s serve
`scratch` and `manual`: they follow torch.optim's documented algorithms line by line
(weight decay added to the gradient, Adam's bias corrections, RMSprop's eps outside
the square root) in torch's public in-place ops, and tests check them against torch.optim
to 1e-6, also on the `manual` model's one contiguous parameter tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from linreg_lab.schema import AdamConfig, RMSpropConfig, SGDConfig

OptimizerConfig = SGDConfig | RMSpropConfig | AdamConfig


def state(store: dict[int, torch.Tensor], i: int, like: torch.Tensor) -> torch.Tensor:
    """The state tensor of parameter i, zeros on its first step (made once, not every step)."""
    found = store.get(i)
    if found is None:
        found = store[i] = torch.zeros_like(like)
    return found


def _torch_sgd(params, lr: float, cfg: SGDConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, dampening=cfg.dampening,
                           nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)


def _torch_rmsprop(params, lr: float, cfg: RMSpropConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                               centered=cfg.centered, weight_decay=cfg.weight_decay)


def _torch_adam(params, lr: float, cfg: AdamConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps,
                            weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)


TORCH_OPTIMIZERS: dict[str, Callable] = {
    "sgd": _torch_sgd,
    "momentum": _torch_sgd,
    "rmsprop": _torch_rmsprop,
    "adam": _torch_adam,
}


def build_torch_optimizer(params, lr: float, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """torch.optim optimizer named by cfg.name over `params`."""
    return TORCH_OPTIMIZERS[cfg.name](params, lr, cfg)


class SGDUpdate:
    """torch.optim.SGD's algorithm (momentum, dampening, nesterov, weight decay)."""

    def __init__(self, lr: float, cfg: SGDConfig):
        self.lr, self.cfg = lr, cfg
        self.buf: dict[int, torch.Tensor] = {}

    def __call__(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
        c = self.cfg
        if c.weight_decay:
            g = g + c.weight_decay * p
        if c.momentum:
            if i not in self.buf:
                self.buf[i] = g.clone()
            else:
                self.buf[i].mul_(c.momentum).add_(g, alpha=1 - c.dampening)
            g = g + c.momentum * self.buf[i] if c.nesterov else self.buf[i]
        p.add_(g, alpha=-self.lr)


class RMSpropUpdate:
    """torch.optim.RMSprop's algorithm (centered, momentum, weight decay)."""

    def __init__(self, lr: float, cfg: RMSpropConfig):
        self.lr, self.cfg = lr, cfg
        self.square_avg: dict[int, torch.Tensor] = {}
        self.grad_avg: dict[int, torch.Tensor] = {}
        self.buf: dict[int, torch.Tensor] = {}

    def __call__(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
        c = self.cfg
        if c.weight_decay:
            g = g + c.weight_decay * p
        sq = state(self.square_avg, i, p)
        sq.mul_(c.alpha).addcmul_(g, g, value=1 - c.alpha)
        if c.centered:
            ga = state(self.grad_avg, i, p)
            ga.lerp_(g, 1 - c.alpha)
            avg = (sq - ga * ga).sqrt_().add_(c.eps)
        else:
            avg = sq.sqrt().add_(c.eps)
        if c.momentum > 0:
            buf = state(self.buf, i, p)
            buf.mul_(c.momentum).addcdiv_(g, avg)
            p.add_(buf, alpha=-self.lr)
        else:
            p.addcdiv_(g, avg, value=-self.lr)


class AdamUpdate:
    """torch.optim.Adam's algorithm (bias correction, amsgrad, L2 weight decay)."""

    def __init__(self, lr: float, cfg: AdamConfig):
        self.lr, self.cfg = lr, cfg
        self.m: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}
        self.v_max: dict[int, torch.Tensor] = {}
        self.t: dict[int, int] = {}

    def __call__(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
        c = self.cfg
        beta1, beta2 = c.betas
        if c.weight_decay:
            g = g + c.weight_decay * p
        m = state(self.m, i, p)
        v = state(self.v, i, p)
        t = self.t[i] = self.t.get(i, 0) + 1
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if c.amsgrad:
            v = self.v_max[i] = torch.maximum(self.v_max.get(i, v), v)
        bias2_sqrt = (1 - beta2**t) ** 0.5
        denom = v.sqrt().div_(bias2_sqrt).add_(c.eps)
        p.addcdiv_(m, denom, value=-self.lr / (1 - beta1**t))


UPDATES: dict[str, Callable] = {
    "sgd": SGDUpdate,
    "momentum": SGDUpdate,
    "rmsprop": RMSpropUpdate,
    "adam": AdamUpdate,
}


def build_update(lr: float, cfg: OptimizerConfig):
    """Hand-written update named by cfg.name: call it as update(index, param, grad)."""
    return UPDATES[cfg.name](lr, cfg)
