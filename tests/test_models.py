"""Models against independent references: numpy least squares, autograd, the grid tutorial."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from linreg_lab import fitting
from linreg_lab.analysis import least_squares
from linreg_lab.data import make_dataset
from linreg_lab.models import ManualModel, grid_search
from linreg_lab.optimizers import build_torch_optimizer
from linreg_lab.schema import GradientModelConfig, Loss, Reduction
from tests.conftest import compose_config

GRADIENT_MODELS = ["linear", "scratch", "manual", "no_intercept"]
# A learning rate that each optimizer handles on d2l's data; the check is recovery, not speed.
LR = {"sgd": 0.1, "momentum": 0.02, "rmsprop": 0.01, "adam": 0.05}
RECOVERY_TOL = 1e-4  # noiseless data, 1000 steps: measured errors are ~1e-6 in float32


@pytest.mark.parametrize("optimizer", list(LR))
@pytest.mark.parametrize("model", GRADIENT_MODELS)
def test_noiseless_data_recovers_w_and_b(model: str, optimizer: str) -> None:
    extra = ["data.true_b=0"] if model == "no_intercept" else []
    cfg = compose_config(f"model={model}", f"optimizer={optimizer}", f"lr={LR[optimizer]}", "noise=0",
                         "steps=1000", "device=cpu", *extra)
    data = fitting.load_data(cfg)
    fit = fitting.fit_gradient(cfg, data, torch.device("cpu"))
    errors, _ = fitting.score(cfg, data, fit)
    assert errors["w_error/l2"] < RECOVERY_TOL
    assert abs(errors["b_error"]) < RECOVERY_TOL
    assert fit.histories["train/loss"][1][-1] < fit.histories["train/loss"][1][0] * 1e-6
    assert fit.w.shape == (8, 2) and fit.curves.shape == (1000, 8)  # the default: 8 replicates


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_closed_form_equals_numpy_lstsq(fit_intercept: bool) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.7 + rng.normal(scale=0.3, size=200)
    A = np.c_[X, np.ones(200)] if fit_intercept else X
    ref = np.linalg.lstsq(A, y, rcond=None)[0]
    w, b = least_squares(torch.from_numpy(X), torch.from_numpy(y), fit_intercept)
    assert np.allclose(w.numpy()[0], ref[:4], atol=1e-6, rtol=0)
    assert abs(float(b[0]) - (ref[4] if fit_intercept else 0.0)) < 1e-6


def test_closed_form_model_run_matches_numpy() -> None:
    cfg = compose_config("model=closed_form", "noise=0.5", "device=cpu")
    data = fitting.load_data(cfg)
    fit = fitting.fit_solver(cfg, data)
    X, y = data.X[0].double().numpy(), data.y[0].double().numpy()
    ref = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0]
    assert np.allclose(fit.w.numpy()[0], ref[:-1], atol=1e-6) and abs(float(fit.b[0]) - ref[-1]) < 1e-6
    assert fitting.score(cfg, data, fit)[0]["ols/w_gap_l2"] < 1e-9


@pytest.mark.parametrize("loss", list(Loss))
@pytest.mark.parametrize("reduction", list(Reduction))
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_manual_gradients_equal_autograd(loss: Loss, reduction: Reduction, fit_intercept: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(1, 16, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(1, 16, generator=gen, dtype=torch.float64)
    w, b = torch.randn(1, 3, generator=gen, dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    cfg = GradientModelConfig(name="manual", loss=loss, reduction=reduction, fit_intercept=fit_intercept)
    model = ManualModel(w, b, cfg, 0.1, compose_config("optimizer=sgd").optimizer)
    (batch,) = model.batches(model.rows(X, y).unsqueeze(0))
    grad = model.gradients(batch)[0, 0]
    wa, ba = w[0].clone().requires_grad_(True), b[0].clone().requires_grad_(fit_intercept)
    sq = (X[0] @ wa + (ba if fit_intercept else 0) - y[0]).square()
    ref = (0.5 if loss is Loss.half_mse else 1.0) * (sq.mean() if reduction is Reduction.mean else sq.sum())
    ref.backward()
    reported = ref.detach() / (16 if reduction is Reduction.sum else 1)  # train/loss is the per-sample mean
    assert torch.allclose(model.losses(1)[0, 0], reported)
    assert torch.allclose(grad[:3], wa.grad, atol=1e-12)
    assert len(grad) == 3 + fit_intercept and (not fit_intercept or abs(float(grad[3] - ba.grad)) < 1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam", "rmsprop_centered"])
def test_manual_steps_equal_torch_optim_on_autograd(optimizer: str) -> None:
    """Plain SGD folded into the gradient product and the hand-written updates on theta's (w, b) view
    all take torch.optim's step on autograd's gradient."""
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(1, 200, 2, generator=gen, dtype=torch.float64)
    y = X[0] @ torch.tensor([2.0, -3.4], dtype=torch.float64) + 4.2 + 0.1 * torch.randn(200, generator=gen,
                                                                                       dtype=torch.float64)
    w0, b0 = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    opt = compose_config(f"optimizer={optimizer.removesuffix('_centered')}").optimizer
    if optimizer == "rmsprop_centered":
        opt = dataclasses.replace(opt, centered=True, momentum=0.5)
    model = ManualModel(w0, b0, GradientModelConfig(name="manual"), 0.05, opt)
    assert model.fused == (optimizer == "sgd")
    net = torch.nn.Linear(2, 1, dtype=torch.float64)
    torch.nn.init.zeros_(net.weight), torch.nn.init.zeros_(net.bias)
    ref_opt = build_torch_optimizer(net.parameters(), 0.05, opt)
    batches = model.batches(model.rows(X, y[None]).view(1, 20, 10, 4).transpose(0, 1))  # 20 steps of 10 rows
    for t, batch in enumerate(batches):
        model.step(batch)
        ref_opt.zero_grad()
        torch.nn.functional.mse_loss(net(X[0, 10 * t:10 * t + 10]).squeeze(-1), y[10 * t:10 * t + 10]).backward()
        ref_opt.step()
    w, b = model.params()
    assert torch.allclose(w[0], net.weight.detach()[0], atol=1e-10) and abs(float(b[0] - net.bias.detach()[0])) < 1e-10
    assert not torch.equal(w, w0)


def test_grid_finds_w_2_on_the_tutorial_data() -> None:
    cfg = compose_config("experiment=grid_search")
    data = fitting.load_data(cfg)
    assert data.X[0, :, 0].tolist() == [1.0, 2.0, 3.0] and data.y[0].tolist() == [2.0, 4.0, 6.0]
    result = grid_search(data.X, data.y, cfg.model)
    assert len(result.grid) == 41  # 0.0, 0.1, ..., 4.0
    assert abs(float(result.w[0, 0]) - 2.0) < 1e-12 and float(result.b[0]) == 0.0
    costs = result.costs[0].numpy()  # a parabola: mean((w - 2)^2 x^2) = (w - 2)^2 * 14 / 3
    assert np.allclose(costs, (result.grid[:, 0].numpy() - 2) ** 2 * 14 / 3)


def test_same_config_same_numbers() -> None:
    cfg = compose_config("optimizer=adam", "lr=0.01", "steps=300", "device=cpu")
    runs = [fitting.fit_gradient(cfg, fitting.load_data(cfg), torch.device("cpu")) for _ in range(2)]
    assert np.array_equal(runs[0].curves, runs[1].curves) and torch.equal(runs[0].w, runs[1].w)
    other = compose_config("optimizer=adam", "lr=0.01", "steps=300", "device=cpu", "seed=1")
    assert not np.array_equal(fitting.fit_gradient(other, fitting.load_data(other), torch.device("cpu")).curves,
                              runs[0].curves)


def test_jobs_on_the_same_data_share_it_and_score_as_on_a_fresh_draw() -> None:
    """A process's next job on the very same data (a preset's stream: only the rate, optimizer or batch size
    differ) reuses the draw and what was derived from it; its numbers are those of a fresh draw."""
    stream = ["experiment=batch_size_scaling", "samples=4096", "replicates=4", "device=cpu"]
    first = compose_config(*stream, "batch_size=16", "lr=0.062")
    data = fitting.load_data(first)
    fit = fitting.fit_gradient(first, data, torch.device("cpu"))
    fitting.score(first, data, fit)
    assert data.derived  # the stream's float64 copy, least squares, training rows, full-data loss, design
    second = compose_config(*stream, "batch_size=64", "lr=0.25", "optimizer=momentum")
    shared = fitting.load_data(second)
    assert shared is data
    reused = fitting.fit_gradient(second, shared, torch.device("cpu"))
    reused_scores, _ = fitting.score(second, shared, reused)
    fresh_data = dataclasses.replace(data, derived={})  # the same tensors, nothing derived: computed anew
    fresh = fitting.fit_gradient(second, fresh_data, torch.device("cpu"))
    fresh_scores, _ = fitting.score(second, fresh_data, fresh)
    assert np.array_equal(reused.curves, fresh.curves) and torch.equal(reused.w, fresh.w)
    timing = ("time/", "ttt/seconds")
    np.testing.assert_equal({k: v for k, v in reused_scores.items() if not k.startswith(timing)},
                            {k: v for k, v in fresh_scores.items() if not k.startswith(timing)})
    drawn_again = make_dataset(second.data, second.noise, data.X.shape[1], fitting.seeds(second, "data",
                                                                                         second.data_seed),
                               data.X.dtype)
    assert torch.equal(drawn_again.X, data.X) and torch.equal(drawn_again.y, data.y)  # two jobs changed nothing
    other = compose_config(*stream, "batch_size=16", "lr=0.062", "seed=1")
    redrawn = fitting.load_data(other)
    assert redrawn is not data and not torch.equal(redrawn.X, data.X)
