"""The typed schema of every config group, and the check that turns a config into plain typed values.

Plain dataclasses and enums: the science imports them without Hydra or OmegaConf. The harness
(`config.register_configs`) puts them in Hydra's ConfigStore, so a misspelt key, a wrong type or an
unknown enum value fails at compose time with Hydra's own message; `check` then rejects values that
are well-typed but meaningless (lr <= 0, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from linreg_lab.contract import GD_FAMILY, GRADIENT_MODELS, OBJECTIVES, OPTIMIZERS, SOLVER_MODELS, W_ERROR

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A config value that composes but makes no sense; the message is one line."""


class XDist(Enum):
    normal = "normal"  # N(x_mean, x_std^2) per feature
    uniform = "uniform"  # U[x_low, x_high) per feature
    linspace = "linspace"  # evenly spaced on [x_low, x_high], same for every feature


class NoiseDist(Enum):
    gaussian = "gaussian"  # noise * N(0, 1): mean 0
    uniform = "uniform"  # noise * U[0, 1): mean noise / 2, which moves the intercept


class Sampling(Enum):
    epochs = "epochs"  # reshuffled epochs cut into equal batches: every sample once per epoch
    replacement = "replacement"  # every batch drawn uniformly with replacement (the textbook SGD)


class Spectrum(Enum):
    isotropic = "isotropic"  # every eigenvalue 1: the features as x_dist draws them
    condition = "condition"  # log-spaced from 1 down to 1 / condition_number
    power_law = "power_law"  # lambda_i = i^(-decay), i = 1..d
    list = "list"  # the eigenvalues given


class Basis(Enum):
    axes = "axes"  # the covariance is diagonal: ill-conditioning along the coordinate axes
    rotated = "rotated"  # a random orthogonal basis drawn from basis_seed, the same for every job and replicate


class Spacing(Enum):
    linear = "linear"  # an evaluation every eval_every steps
    log = "log"  # every step up to 64, then 1/64 further each time: a time to target to 1.6% at any budget


class Loss(Enum):
    mse = "mse"  # (y_hat - y)^2
    half_mse = "half_mse"  # 0.5 * (y_hat - y)^2, d2l's squared_loss


class Reduction(Enum):
    mean = "mean"  # average over the batch (nn.MSELoss)
    sum = "sum"  # sum over the batch (the manual_grad tutorial)


class Init(Enum):
    normal = "normal"  # w ~ N(0, init_scale^2), b = 0 (d2l)
    uniform = "uniform"  # w ~ U[0, init_scale), b = 0 (manual_grad tutorial)
    zeros = "zeros"  # w = 0, b = 0
    torch_default = "torch_default"  # w, b ~ U(-1/sqrt(d), 1/sqrt(d)), as nn.Linear


@dataclass
class DataConfig:
    """Synthetic y = X w + b + noise; the noise scale is the top-level `noise`."""

    name: str = "gaussian"
    true_w: list[float] = field(default_factory=lambda: [2.0, -3.4])  # [] with n_features: drawn
    true_b: float = 4.2
    n_features: int | None = None  # None: len(true_w); with true_w empty, that many weights are drawn
    w_norm: float = 1.0  # the drawn weights' norm |w|
    w_seed: int = 0  # the drawn weights' seed: one w for every job and replicate that shares it
    n_train: int = 1000
    n_test: int = 1000
    x_dist: XDist = XDist.normal
    x_mean: float = 0.0
    x_std: float = 1.0
    x_low: float = 0.0
    x_high: float = 1.0
    noise_dist: NoiseDist = NoiseDist.gaussian
    streaming: bool = False  # fresh samples every step instead of a fixed training set
    fixed_design: bool = False  # replicates share replicate 0's X and redraw only the noise
    sampling: Sampling = Sampling.epochs  # how a fixed training set's batches are drawn
    predict_at: list[float] = field(default_factory=list)  # x values (1 feature) to log predictions for
    spectrum: Spectrum = Spectrum.isotropic  # eigenvalues of the features' covariance, times x_std^2
    condition_number: float = 1.0  # spectrum=condition: lambda_max / lambda_min
    decay: float = 1.0  # spectrum=power_law: lambda_i = i^(-decay)
    eigenvalues: list[float] = field(default_factory=list)  # spectrum=list: one per feature
    basis: Basis = Basis.axes  # the covariance's eigenvectors
    basis_seed: int = 0  # basis=rotated: the seed of the orthogonal basis


@dataclass
class GradientModelConfig:
    """A model fitted by an optimizer: linear, scratch, manual or no_intercept."""

    name: str = "linear"
    fit_intercept: bool = True
    loss: Loss = Loss.mse
    reduction: Reduction = Reduction.mean
    init: Init = Init.normal
    init_scale: float = 0.01


@dataclass
class ClosedFormConfig:
    """Least squares in closed form: the reference every run is scored against."""

    name: str = "closed_form"
    fit_intercept: bool = True
    loss: Loss = Loss.mse
    weight_decay: float = 0.0  # ridge, with torch's meaning: minimizes loss + weight_decay / 2 * |(w, b)|^2
    optimal_ridge: bool = False  # the penalty isotropic Gaussian theory calls optimal (theory.py)


@dataclass
class GridConfig:
    """Exhaustive search of w over a grid (every feature, cartesian product); b solved exactly."""

    name: str = "grid"
    fit_intercept: bool = False
    loss: Loss = Loss.mse
    w_low: float = 0.0
    w_high: float = 4.0
    w_step: float = 0.1


@dataclass
class SGDConfig:
    """torch.optim.SGD; `momentum` is the same algorithm with momentum 0.9."""

    name: str = "sgd"
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass
class RMSpropConfig:
    """torch.optim.RMSprop."""

    name: str = "rmsprop"
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    weight_decay: float = 0.0


@dataclass
class AdamConfig:
    """torch.optim.Adam."""

    name: str = "adam"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False


@dataclass
class MlflowConfig:
    experiment: str = "linreg_lab"
    tracking_uri: str | None = None  # MLFLOW_TRACKING_URI wins; None -> sqlite:///mlflow.db here


@dataclass
class Config:
    """The whole run. Top-level keys are the ones a sweep overrides most."""

    data: Any = None
    model: Any = None
    optimizer: Any = None
    experiment: str | None = None  # name of the preset, set by experiment/*.yaml
    lr: float = 0.03
    batch_size: int | str = 10  # an int, or "full"
    noise: float = 0.01
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0
    data_seed: int | None = None  # None -> derived from seed
    init_seed: int | None = None
    order_seed: int | None = None
    steps: int | None = 1000
    epochs: int | None = None
    samples: int | None = None  # a budget in rows drawn: ceil(samples / batch_size) steps
    eval_every: int | None = None  # None -> about 100 evaluations per run
    eval_spacing: Spacing = Spacing.linear
    resume: bool = False  # skip jobs whose config already has a FINISHED run
    replicates: int = 8  # independent replicates trained together as one batched computation
    replicate_over: list[str] = field(default_factory=lambda: ["data", "init", "order"])  # what they redraw
    target_rel: float = 0.01  # time to target: training loss within this fraction of the least-squares loss
    stop_at_target: bool = False  # end training at the first evaluation that meets the target
    theory_tuned: bool = False  # full-batch sgd: lr = 2 / (lambda_max + lambda_min); momentum: Polyak's pair
    objective: str = W_ERROR  # the final metric a job returns to the sweeper (contract.OBJECTIVES)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


@dataclass
class RunConfig:
    """The checked config: what the code below the entry point receives."""

    data: DataConfig
    model: GradientModelConfig | ClosedFormConfig | GridConfig
    optimizer: SGDConfig | RMSpropConfig | AdamConfig
    experiment: str | None
    lr: float
    batch_size: int | None  # None = full batch
    noise: float
    device: str
    dtype: str
    seed: int
    data_seed: int
    init_seed: int
    order_seed: int
    steps: int
    epochs: int | None
    eval_every: int
    resume: bool
    replicates: int
    replicate_over: list[str]
    target_rel: float
    mlflow: MlflowConfig
    stop_at_target: bool = False
    theory_tuned: bool = False
    eval_spacing: Spacing = Spacing.linear
    objective: str = W_ERROR

    @property
    def is_solver(self) -> bool:
        return self.model.name in SOLVER_MODELS


def check(c: Config) -> RunConfig:
    """Validate a config (as Hydra composed it, turned into these dataclasses) and return the typed values
    the code below the entry point receives (raises ConfigError)."""
    data, model, opt = c.data, c.model, c.optimizer
    _check_names(model.name, opt.name)
    _check_number("lr", c.lr, positive=True)
    _check_number("noise", c.noise, positive=False)
    if c.device not in DEVICES:
        raise ConfigError(f"device={c.device!r} is not known; allowed: {', '.join(DEVICES)}")
    if c.dtype not in DTYPES:
        raise ConfigError(f"dtype={c.dtype!r} is not known; allowed: {', '.join(DTYPES)}")
    _check_data(data)
    _check_optimal_ridge(model, data)
    batch_size = _check_batch_size(c.batch_size, data)
    if c.theory_tuned:
        _check_theory_tuned(model, opt, batch_size, data)
    steps = _check_budget(c.steps, c.epochs, c.samples, batch_size, data)
    _check_replicates(c.replicates, list(c.replicate_over))
    _check_number("target_rel", c.target_rel, positive=True)
    if c.objective not in OBJECTIVES:
        raise ConfigError(f"objective={c.objective!r} is not a metric a job records; allowed: {', '.join(OBJECTIVES)}")
    if c.eval_every is not None and c.eval_every <= 0:
        raise ConfigError(f"eval_every must be a positive number of steps, got {c.eval_every}")
    eval_every = c.eval_every or max(1, steps // 100)
    return RunConfig(
        data=data, model=model, optimizer=opt, experiment=c.experiment, lr=float(c.lr),
        batch_size=batch_size, noise=float(c.noise), device=c.device, dtype=c.dtype,
        seed=c.seed, data_seed=_derived(c.data_seed, c.seed, 0),
        init_seed=_derived(c.init_seed, c.seed, 1), order_seed=_derived(c.order_seed, c.seed, 2),
        steps=steps, epochs=c.epochs, eval_every=eval_every, resume=c.resume, replicates=c.replicates,
        replicate_over=list(c.replicate_over), target_rel=float(c.target_rel), mlflow=c.mlflow,
        stop_at_target=c.stop_at_target, theory_tuned=c.theory_tuned, eval_spacing=c.eval_spacing,
        objective=c.objective,
    )


def _derived(explicit: int | None, seed: int, stream: int) -> int:
    """Seed of one random stream: the explicit one, else a fixed offset of `seed`."""
    return explicit if explicit is not None else seed * 3 + stream


def _check_names(model: str, optimizer: str) -> None:
    if model not in GRADIENT_MODELS + SOLVER_MODELS:
        allowed = ", ".join(GRADIENT_MODELS + SOLVER_MODELS)
        raise ConfigError(f"model.name={model!r} is not known; allowed: {allowed}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name={optimizer!r} is not known; allowed: {', '.join(OPTIMIZERS)}")


def _check_number(key: str, value: float, positive: bool) -> None:
    bad = not math.isfinite(value) or (value <= 0 if positive else value < 0)
    if bad:
        rule = "> 0" if positive else ">= 0"
        raise ConfigError(f"{key} must be a finite number {rule}, got {value}")


REPLICATE_STREAMS = ("data", "init", "order")


def _check_replicates(replicates: int, over: list[str]) -> None:
    if replicates < 1:
        raise ConfigError(f"replicates must be >= 1, got {replicates}")
    unknown = [s for s in over if s not in REPLICATE_STREAMS]
    if unknown:
        raise ConfigError(f"replicate_over has {unknown}; allowed: {', '.join(REPLICATE_STREAMS)}")


def drawn_weights(n_features: int, seed: int, norm: float) -> list[float]:
    """True weights of a given norm, in a direction drawn uniformly (Gaussian, normalized) from `seed`."""
    w = np.random.default_rng(seed).standard_normal(n_features)
    return (w * (norm / np.linalg.norm(w))).tolist()


def _check_data(data: DataConfig) -> None:
    """Check the data recipe; draws true_w when it is empty and n_features is set."""
    if not data.true_w:
        if data.n_features is None:
            raise ConfigError("data.true_w is empty; allowed: one weight per feature, or data.n_features to draw "
                              "them (with data.w_seed, data.w_norm)")
        if data.n_features < 1 or data.w_seed < 0:
            raise ConfigError(f"data.n_features must be >= 1 and data.w_seed >= 0, got {data.n_features} and "
                              f"{data.w_seed}")
        _check_number("data.w_norm", data.w_norm, positive=False)
        data.true_w = drawn_weights(data.n_features, data.w_seed, data.w_norm)
    if data.n_features is not None and data.n_features != len(data.true_w):
        raise ConfigError(f"data.true_w has {len(data.true_w)} weights but data.n_features is {data.n_features}; "
                          "give one weight per feature")
    if data.n_train <= 0 or data.n_test <= 0:
        raise ConfigError(f"data.n_train and data.n_test must be > 0, got {data.n_train} and {data.n_test}")
    if data.x_dist is XDist.normal and data.x_std <= 0:
        raise ConfigError(f"data.x_std must be > 0, got {data.x_std}")
    if data.x_dist is not XDist.normal and data.x_high <= data.x_low:
        raise ConfigError(f"data.x_high must be > data.x_low, got [{data.x_low}, {data.x_high}]")
    if data.predict_at and len(data.true_w) != 1:
        raise ConfigError("data.predict_at needs one-feature data (len(data.true_w) == 1)")
    _check_spectrum(data)


def _check_spectrum(data: DataConfig) -> None:
    d = len(data.true_w)
    if data.spectrum is Spectrum.condition:
        if not (math.isfinite(data.condition_number) and data.condition_number >= 1):
            raise ConfigError(f"data.condition_number must be a finite number >= 1, got {data.condition_number}")
        if d == 1 and data.condition_number != 1:
            raise ConfigError("data.condition_number > 1 needs at least 2 features (data.n_features or data.true_w)")
    if data.spectrum is Spectrum.power_law:
        _check_number("data.decay", data.decay, positive=True)
    if data.spectrum is Spectrum.list:
        values = list(data.eigenvalues)
        if len(values) != d or not all(math.isfinite(v) and v > 0 for v in values):
            raise ConfigError(f"data.eigenvalues must be {d} finite numbers > 0 (one per feature), got {values}")
    elif data.eigenvalues:
        raise ConfigError(f"data.eigenvalues is set but data.spectrum={data.spectrum.value}; allowed: "
                          "data.spectrum=list with the eigenvalues, or no data.eigenvalues")
    shaped = data.spectrum is not Spectrum.isotropic or data.basis is Basis.rotated
    if shaped and data.x_dist is not XDist.normal:
        raise ConfigError(f"data.spectrum={data.spectrum.value} data.basis={data.basis.value} needs "
                          f"data.x_dist=normal, got {data.x_dist.value}; allowed: isotropic axes-aligned features "
                          "for uniform and linspace")
    if data.basis_seed < 0:
        raise ConfigError(f"data.basis_seed must be >= 0, got {data.basis_seed}")


def _check_optimal_ridge(model, data: DataConfig) -> None:
    """model.optimal_ridge is the theory of isotropic Gaussian rows without an intercept: nothing else."""
    if not getattr(model, "optimal_ridge", False):
        return
    setting = {"data.x_dist": data.x_dist.value, "data.x_mean": data.x_mean, "data.noise_dist": data.noise_dist.value,
               "data.streaming": data.streaming, "model.fit_intercept": model.fit_intercept,
               "model.weight_decay": model.weight_decay}
    wanted = {"data.x_dist": "normal", "data.x_mean": 0.0, "data.noise_dist": "gaussian", "data.streaming": False,
              "model.fit_intercept": False, "model.weight_decay": 0.0}
    wrong = [f"{k}={v}" for k, v in setting.items() if v != wanted[k]]
    if wrong:
        allowed = ", ".join(f"{k}={v}" for k, v in wanted.items())
        raise ConfigError(f"model.optimal_ridge needs isotropic Gaussian data without an intercept, got "
                          f"{', '.join(wrong)}; allowed: {allowed}")


def full_batch(batch_size: int | None, data: DataConfig) -> bool:
    """Every step sees the whole training set (batch None, or every row once per step): no batch noise."""
    return batch_size is None or (batch_size >= data.n_train and data.sampling is Sampling.epochs)


def _check_theory_tuned(model, opt, batch_size: int | None, data: DataConfig) -> None:
    """theory_tuned sets the rate (and momentum) that theory calls best for full-batch gradient descent and heavy
    ball: nothing else has one."""
    full = full_batch(batch_size, data)
    plain = opt.name in GD_FAMILY and not getattr(opt, "nesterov", False) and not getattr(opt, "dampening", 0.0)
    if model.name in SOLVER_MODELS or not plain or not full or data.streaming or opt.weight_decay:
        raise ConfigError(f"theory_tuned=true needs full-batch sgd or momentum without weight decay, nesterov or "
                          f"dampening on a fixed training set, got model={model.name} optimizer={opt.name} "
                          f"batch_size={'full' if batch_size is None else batch_size}")


def _check_batch_size(batch_size: int | str, data: DataConfig) -> int | None:
    """Return the batch size, or None for full batch."""
    if batch_size == "full":
        if data.streaming:
            raise ConfigError("batch_size=full needs a fixed training set; streaming data wants an int")
        return None
    if isinstance(batch_size, str):
        raise ConfigError(f"batch_size must be a positive int or 'full', got {batch_size!r}")
    if batch_size <= 0 or (not data.streaming and batch_size > data.n_train):
        raise ConfigError(f"batch_size must be in 1..{data.n_train} (data.n_train) or 'full', got {batch_size}")
    return batch_size


def _check_budget(steps: int | None, epochs: int | None, samples: int | None, batch_size: int | None,
                  data: DataConfig) -> int:
    """Return the budget in optimizer steps; exactly one of steps/epochs/samples must be set (samples: the rows a
    run may draw, ceil(samples / batch_size) steps, so that every batch size of a sweep gets the same data)."""
    given = {k: v for k, v in (("steps", steps), ("epochs", epochs), ("samples", samples)) if v is not None}
    if len(given) != 1:
        raise ConfigError(f"set exactly one of steps, epochs and samples (the others null), got steps={steps}, "
                          f"epochs={epochs}, samples={samples}")
    (key, budget), = given.items()
    if budget <= 0:
        raise ConfigError(f"{key} must be > 0, got {budget}")
    batch = data.n_train if batch_size is None else batch_size
    if key == "steps":
        return steps
    if key == "samples":
        return math.ceil(samples / batch)
    if data.streaming:
        raise ConfigError("epochs needs a fixed training set; streaming data counts steps or samples")
    return epochs * math.ceil(data.n_train / batch)


