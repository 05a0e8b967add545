"""The hand-written updates are torch.optim's algorithms: same steps, same numbers."""

from __future__ import annotations

import pytest
import torch

from linreg_lab.optimizers import build_torch_optimizer, build_update
from linreg_lab.schema import AdamConfig, RMSpropConfig, SGDConfig

CASES = {
    "sgd": SGDConfig(),
    "sgd_wd": SGDConfig(weight_decay=0.1),
    "momentum": SGDConfig(name="momentum", momentum=0.9),
    "momentum_dampening": SGDConfig(name="momentum", momentum=0.9, dampening=0.3),
    "nesterov": SGDConfig(name="momentum", momentum=0.9, nesterov=True, weight_decay=0.01),
    "rmsprop": RMSpropConfig(),
    "rmsprop_tutorial": RMSpropConfig(alpha=0.09),
    "rmsprop_slow": RMSpropConfig(alpha=0.9999),
    "rmsprop_slower": RMSpropConfig(alpha=0.99999999),
    "rmsprop_centered_momentum": RMSpropConfig(centered=True, momentum=0.5, weight_decay=0.01),
    "adam": AdamConfig(),
    "adam_amsgrad_wd": AdamConfig(amsgrad=True, weight_decay=0.05, betas=[0.8, 0.99]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hand_written_update_equals_torch_optim(case: str) -> None:
    cfg = CASES[case]
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(3, generator=gen, dtype=torch.float64), torch.randn((), generator=gen, dtype=torch.float64)]
    theirs = [p.clone().requires_grad_(True) for p in start]
    ours = [p.clone() for p in start]
    opt = build_torch_optimizer(theirs, 0.05, cfg)
    update = build_update(0.05, cfg)
    for _ in range(200):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in start]
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        opt.step()
        for i, (p, g) in enumerate(zip(ours, grads)):
            update(i, p, g.clone())
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b.detach(), atol=1e-6, rtol=0), (case, a, b)
    assert not torch.equal(ours[0], start[0])  # the updates moved the parameters at all


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(CASES))
def test_update_on_the_manual_layout_equals_torch_optim(case: str, dtype: torch.dtype) -> None:
    """The manual model's layout: one contiguous tensor (w, b, -1); the update works on the view of (w, b)
    and its gradient. The parameters take torch.optim's (default) steps; the constant never moves."""
    cfg = CASES[case]
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(4, generator=gen, dtype=torch.float64).to(dtype)
    theirs = start.clone().requires_grad_(True)
    opt = build_torch_optimizer([theirs], 0.05, cfg)
    ours = torch.cat([start, -torch.ones(1, dtype=dtype)])
    grad = torch.zeros_like(ours)
    update = build_update(0.05, cfg)
    for _ in range(200):
        g = torch.randn(4, generator=gen, dtype=torch.float64).to(dtype)
        theirs.grad = g.clone()
        opt.step()
        grad[:4] = g
        update(0, ours[:4], grad[:4])
    tol = 1e-10 if dtype is torch.float64 else 1e-5
    assert torch.allclose(ours[:4], theirs.detach(), atol=tol, rtol=0), (case, ours, theirs)
    assert ours[4] == -1 and grad[4] == 0
    assert not torch.equal(ours[:4], start)
