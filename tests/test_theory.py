"""Theory beside measurement: ridge, gradient descent for t steps and SGD's batch noise, each against enough
replicates of real training; the standard errors against the spread of independent jobs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_scored

# 8 features from 30 points, noise 1: variance matters. Fixed design, only the noise redrawn: theory is exact.
FIXED = ["data.fixed_design=true", "replicate_over=[data]", "data.n_train=30", "noise=1.0", "dtype=float64",
         "data.true_w=[1.0,-1.0,0.5,2.0,0.0,1.0,-0.5,0.3]", "replicates=400"]
DECOMPOSED = ["est/w_bias2", "est/w_var", "est/w_mse", "est/b_bias2", "est/b_var", "pred/bias2", "pred/var"]


def agree(m: dict[str, float], keys: list[str], rel: float) -> None:
    for key in keys:
        assert m[key] == pytest.approx(m[f"theory/{key}"], rel=rel), (key, m[key], m[f"theory/{key}"])


@pytest.mark.parametrize("wd", [0.1, 0.3, 1.0])
def test_ridge_bias_and_variance_match_theory(wd: float) -> None:
    m = run_scored("model=closed_form", f"model.weight_decay={wd}", *FIXED)
    agree(m, DECOMPOSED + ["pred/test_mse"], rel=0.15)


PRESET = ["experiment=bias_variance", "replicates=200"]  # 20 features from 30 points: a deep U in both knobs


def test_ridge_theory_finds_the_weight_decay_that_minimizes_test_error() -> None:
    best = run_scored(*PRESET, "steps=10")["theory/best_weight_decay"]
    assert 0.01 < best < 1  # inside the range, not at an end: this data wants some ridge

    def error(wd: float) -> float:  # E(y_hat - E[y|x])^2 over the noise draws: the test error less the noise
        m = run_scored(*PRESET, f"optimizer.weight_decay={wd}")  # 3000 steps: converged to the ridge fit
        assert m["theory/best_weight_decay"] == pytest.approx(best)  # the optimum is the data's, not the run's
        return m["pred/bias2"] + m["pred/var"]

    at_best = error(best)
    assert at_best < 0.9 * error(best / 10) and at_best < 0.9 * error(best * 10)


@pytest.mark.parametrize("steps", [5, 20])
def test_gradient_descent_for_t_steps_matches_theory(steps: int) -> None:
    m = run_scored("batch_size=full", "lr=0.1", f"steps={steps}", "model.init=zeros", *FIXED)
    assert m["est/w_bias2"] > 0.05  # early: a real bias to compare
    agree(m, DECOMPOSED, rel=0.15)


def test_heavy_ball_for_t_steps_matches_theory() -> None:
    m = run_scored("batch_size=full", "optimizer=momentum", "lr=0.01", "steps=30", *FIXED)
    agree(m, ["est/w_bias2", "est/w_var", "est/w_mse", "pred/bias2", "pred/var"], rel=0.15)


def test_early_stopping_theory_finds_the_best_budget() -> None:
    best = run_scored(*PRESET, "steps=10")["theory/best_steps"]
    assert 3 < best < 3000

    def error(steps: int) -> float:
        m = run_scored(*PRESET, f"steps={steps}")
        return m["pred/bias2"] + m["pred/var"]

    at_best = error(int(best))
    assert at_best < 0.9 * error(max(1, int(best / 8))) and at_best < 0.9 * error(int(best * 8))


# One data set, only the batch order redrawn: all the spread is SGD's own.
ORDER = ["replicate_over=[order]", "data.n_train=200", "noise=1.0", "dtype=float64", "replicates=300", "steps=3000",
         "batch_size=5"]


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.01), ("momentum", 0.002)])
def test_sgd_stationary_noise_matches_theory_with_replacement(optimizer: str, lr: float) -> None:
    m = run_scored(f"optimizer={optimizer}", f"lr={lr}", "data.sampling=replacement", *ORDER)
    assert m["est/w_var"] == pytest.approx(m["theory/est/w_var"], rel=0.3)
    assert m["est/b_var"] == pytest.approx(m["theory/est/b_var"], rel=0.3)
    assert m["theory/est/w_var_sgd"] == pytest.approx(m["theory/est/w_var"])  # labels fixed: all of it is SGD's


def test_reshuffled_epochs_are_quieter_than_batches_with_replacement() -> None:
    epochs = run_scored("lr=0.01", "data.sampling=epochs", *ORDER)
    replacement = run_scored("lr=0.01", "data.sampling=replacement", *ORDER)
    assert epochs["theory/est/w_var"] == pytest.approx(replacement["theory/est/w_var"])  # one theory for both
    assert epochs["est/w_var"] < 0.3 * replacement["est/w_var"]


def test_theory_is_labelled_and_absent_where_there_is_none() -> None:
    from linreg_lab import fitting
    from tests.conftest import compose_config

    kinds = {args: fitting.theory_kind(compose_config(*args)) for args in [
        ("model=closed_form",), ("batch_size=full",), ("optimizer=momentum", "batch_size=full"), (),
        ("optimizer=adam",), ("optimizer=rmsprop",), ("optimizer=momentum", "optimizer.nesterov=true"),
        ("data=streaming_1d",), ("experiment=grid_search",)]}
    assert list(kinds.values()) == ["exact", "exact", "exact", "approximate"] + ["none"] * 5
    adam = run_scored("optimizer=adam", "lr=0.01", "steps=100")
    assert not any(k.startswith("theory/est") or k.startswith("theory/pred") for k in adam)


def test_standard_errors_match_the_spread_of_independent_jobs() -> None:
    # 80 jobs of R = 8 replicates each: the standard deviation of an estimate across jobs is what each job's
    # standard error claims to be (its sampling error is ~8%, the SEs' mean ~4%).
    jobs = [run_scored("model=closed_form", "replicates=8", f"seed={k}", "noise=1.0", "data.n_train=30",
                       "dtype=float64", "model.weight_decay=0.3") for k in range(80)]
    for key in ("est/w_var", "est/w_mse", "est/w_bias2", "pred/var", "pred/test_mse"):
        spread = np.std([m[key] for m in jobs], ddof=1)
        claimed = np.sqrt(np.mean([m[f"{key}_se"] ** 2 for m in jobs]))
        assert claimed == pytest.approx(spread, rel=0.3), key


def test_one_replicate_logs_no_variance() -> None:
    m = run_scored("replicates=1", "steps=100")
    assert "est/w_mse" in m and "pred/test_mse" in m
    assert not [k for k in m if k.endswith(("_var", "_se", "bias2")) and not k.startswith("theory/")]
