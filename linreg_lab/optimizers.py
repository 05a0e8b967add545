"""The four optimizers, as torch.optim objects and as hand-written updates of the same maths.

`build_torch_optimizer` serves the `linear` model. The hand-written `Update`s serve
`scratch` and `manual`: they follow torch.optim's documented algorithms line by line
(weight decay added to the gradient, Adam's bias corrections, RMSprop's eps outside
the square root) and a test checks them against torch.optim to 1e-6. `FusedUpdate` runs
the same algorithms as the single kernels behind torch.optim's `fused=True`, for the
`manual` model's one contiguous parameter tensor; tests check it against torch.optim too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from linreg_lab.config import AdamConfig, RMSpropConfig, SGDConfig

OptimizerConfig = SGDConfig | RMSpropConfig | AdamConfig


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
        sq = self.square_avg.setdefault(i, torch.zeros_like(p))
        sq.mul_(c.alpha).addcmul_(g, g, value=1 - c.alpha)
        if c.centered:
            ga = self.grad_avg.setdefault(i, torch.zeros_like(p))
            ga.lerp_(g, 1 - c.alpha)
            avg = (sq - ga * ga).sqrt_().add_(c.eps)
        else:
            avg = sq.sqrt().add_(c.eps)
        if c.momentum > 0:
            buf = self.buf.setdefault(i, torch.zeros_like(p))
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
        m = self.m.setdefault(i, torch.zeros_like(p))
        v = self.v.setdefault(i, torch.zeros_like(p))
        t = self.t[i] = self.t.get(i, 0) + 1
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if c.amsgrad:
            v = self.v_max[i] = torch.maximum(self.v_max.get(i, v), v)
        bias2_sqrt = (1 - beta2**t) ** 0.5
        denom = (v.sqrt() / bias2_sqrt).add_(c.eps)
        p.addcdiv_(m, denom, value=-self.lr / (1 - beta1**t))


class FusedUpdate:
    """One optimizer step as one of torch's fused kernels (what torch.optim runs with fused=True),
    called directly on one contiguous tensor `p` and its gradient buffer `g`, with none of
    torch.optim's per-step Python around it. Entries whose gradient stays zero never move (the
    manual model keeps a constant there); so weight decay, which would move them, is added to the
    gradient of the `decayed` entries (views of p and g) before the kernel, as torch.optim does.

    SGD (every option) and Adam (every option) are their own kernels. RMSprop without centering or
    momentum is Adam with beta1 = 0 (the first moment is the gradient itself), beta2 = alpha and no
    bias correction: Adam's kernel with its step count held where alpha**t is 0."""

    HELD_STEP = 1e12  # alpha**1e12 == 0 for alpha <= MAX_ALPHA: both bias corrections are exactly 1
    MAX_ALPHA = 0.9999  # alpha**1e12 < 1e-43000, far past underflow; closer to 1 keeps the Python update

    def __init__(self, lr: float, cfg: OptimizerConfig, p: torch.Tensor, g: torch.Tensor,
                 decayed: tuple[torch.Tensor, torch.Tensor]):
        self.p, self.g, self.decayed, self.wd = [p], [g], decayed, cfg.weight_decay
        self.sgd, self.counted = isinstance(cfg, SGDConfig), isinstance(cfg, AdamConfig)
        self.first = True
        if self.sgd:
            self.buf = [torch.empty_like(p)] if cfg.momentum else []
            self.kwargs = dict(weight_decay=0.0, momentum=cfg.momentum, lr=lr, dampening=cfg.dampening,
                               nesterov=cfg.nesterov, maximize=False)
            return
        self.m, self.v = [torch.zeros_like(p)], [torch.zeros_like(p)]
        step_dtype = torch.float32  # torch.optim's own dtype for a fused optimizer's step
        if isinstance(cfg, AdamConfig):
            self.steps = [torch.zeros((), dtype=step_dtype, device=p.device)]
            self.one = torch.ones((), dtype=step_dtype, device=p.device)  # adding a tensor: 2.5 us, a number: 6.6
            self.v_max = [torch.zeros_like(p)] if cfg.amsgrad else []
            self.kwargs = dict(lr=lr, beta1=cfg.betas[0], beta2=cfg.betas[1], weight_decay=0.0, eps=cfg.eps,
                               amsgrad=cfg.amsgrad, maximize=False)
        else:
            self.steps = [torch.full((), self.HELD_STEP, dtype=step_dtype, device=p.device)]
            self.v_max = []
            self.kwargs = dict(lr=lr, beta1=0.0, beta2=cfg.alpha, weight_decay=0.0, eps=cfg.eps, amsgrad=False,
                               maximize=False)

    @staticmethod
    def supports(cfg: OptimizerConfig, device: torch.device) -> bool:
        """Whether a kernel runs this optimizer here: CPU or CUDA, and RMSprop only in its plain form."""
        if device.type not in ("cpu", "cuda"):
            return False
        if isinstance(cfg, RMSpropConfig):
            return not cfg.centered and not cfg.momentum and cfg.alpha <= FusedUpdate.MAX_ALPHA
        return True

    def __call__(self) -> None:
        if self.wd:
            p, g = self.decayed
            g.add_(p, alpha=self.wd)
        if self.sgd:
            torch._fused_sgd_(self.p, self.g, self.buf, is_first_step=self.first and bool(self.buf), **self.kwargs)
            self.first = False
            return
        if self.counted:
            self.steps[0].add_(self.one)
        torch._fused_adam_(self.p, self.g, self.m, self.v, self.v_max, self.steps, **self.kwargs)


UPDATES: dict[str, Callable] = {
    "sgd": SGDUpdate,
    "momentum": SGDUpdate,
    "rmsprop": RMSpropUpdate,
    "adam": AdamUpdate,
}


def build_update(lr: float, cfg: OptimizerConfig):
    """Hand-written update named by cfg.name: call it as update(index, param, grad)."""
    return UPDATES[cfg.name](lr, cfg)
