"""Synthetic data recipes, y = X w + b + noise, and the order in which batches are drawn.

Everything is drawn on the CPU from explicit generators, so a seed gives the same
numbers on every device, then moved once to the training device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import torch

from linreg_lab.schema import Basis, DataConfig, NoiseDist, Spectrum, XDist


@dataclass
class Dataset:
    """R replicates' training data and one fixed test set; a stream holds every sample drawn, in order."""

    X: torch.Tensor  # (R, n, d)
    y: torch.Tensor  # (R, n)
    X_test: torch.Tensor  # (m, d), the same for every replicate
    y_test: torch.Tensor  # (m,)
    derived: dict = field(default_factory=dict, repr=False, compare=False)  # what was computed from it (memo)

    def to(self, device: torch.device) -> Dataset:
        """The data on `device` (itself, and what was derived from it, when it is there already)."""
        tensors = (self.X, self.y, self.X_test, self.y_test)
        if all(t.device == torch.device(device) for t in tensors):
            return self
        return Dataset(*(t.to(device) for t in tensors))

    def memo(self, key: Hashable, compute: Callable[[], object]):
        """compute() once for this data and `key`: the jobs of a process that share their data (a preset's
        stream, drawn alike for every rate and batch size) share what is computed from it. Nothing derived
        is ever modified in place."""
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]


def replicate_seed(base: int, r: int, varies: bool) -> int:
    """Seed of one random stream for replicate r: the base seed for r = 0 or a stream that does not vary."""
    if r == 0 or not varies:
        return base
    return int(np.random.SeedSequence([base, r]).generate_state(1)[0])


def eigenvalues(cfg: DataConfig) -> np.ndarray:
    """The eigenvalues (d,) of the features' covariance in units of x_std^2: condition and power_law largest
    first, log-spaced from 1 to 1/condition_number or i^(-decay)."""
    d = len(cfg.true_w)
    if cfg.spectrum is Spectrum.condition:
        return cfg.condition_number ** -(np.arange(d) / max(d - 1, 1))
    if cfg.spectrum is Spectrum.power_law:
        return np.arange(1, d + 1, dtype=np.float64) ** -cfg.decay
    if cfg.spectrum is Spectrum.list:
        return np.asarray(cfg.eigenvalues, dtype=np.float64)
    return np.ones(d)


def basis(cfg: DataConfig) -> np.ndarray:
    """The covariance's eigenvectors as columns (d, d): the identity, or an orthogonal matrix drawn from basis_seed
    uniformly (Haar: QR of a Gaussian matrix with R's diagonal made positive; Mezzadri 2007, "How to generate
    random matrices from the classical compact groups"), the same for every job and replicate that shares it."""
    d = len(cfg.true_w)
    return np.eye(d) if cfg.basis is Basis.axes else haar_basis(d, cfg.basis_seed).copy()


@functools.lru_cache(maxsize=8)  # every replicate's draw asks for the same one
def haar_basis(d: int, seed: int) -> np.ndarray:
    Q, R = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def covariance(cfg: DataConfig) -> np.ndarray:
    """E[(x - E x)(x - E x)^T] of normal features: x_std^2 Q diag(eigenvalues) Q^T."""
    Q = basis(cfg)
    return cfg.x_std**2 * (Q * eigenvalues(cfg)) @ Q.T


def shaped(cfg: DataConfig) -> bool:
    """Do the features have a spectrum or basis of their own (not isotropic along the axes)?"""
    return cfg.spectrum is not Spectrum.isotropic or cfg.basis is not Basis.axes


def sample_x(cfg: DataConfig, n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Draw n inputs with len(true_w) features from the configured x distribution; normal features with a
    spectrum are z diag(sqrt(eigenvalues)) Q^T from the same standard normal z as isotropic ones."""
    d = len(cfg.true_w)
    if cfg.x_dist is XDist.normal:
        z = torch.randn(n, d, generator=gen, dtype=dtype)
        if shaped(cfg):
            root = torch.from_numpy(basis(cfg) * np.sqrt(eigenvalues(cfg))).to(dtype)  # Q diag(sqrt(lambda))
            z = z @ root.T
        return cfg.x_mean + cfg.x_std * z
    if cfg.x_dist is XDist.uniform:
        return cfg.x_low + (cfg.x_high - cfg.x_low) * torch.rand(n, d, generator=gen, dtype=dtype)
    grid = torch.linspace(cfg.x_low, cfg.x_high, n, dtype=dtype)
    return grid.unsqueeze(1).repeat(1, d)


def sample_noise(cfg: DataConfig, noise: float, n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Noise of scale `noise`: gaussian has mean 0, uniform U[0, 1) has mean noise / 2."""
    if cfg.noise_dist is NoiseDist.gaussian:
        return noise * torch.randn(n, generator=gen, dtype=dtype)
    return noise * torch.rand(n, generator=gen, dtype=dtype)


def noise_moments(cfg: DataConfig, noise: float) -> tuple[float, float]:
    """(mean, variance) of the noise: gaussian (0, noise^2), uniform U[0, 1) * noise (noise/2, noise^2/12)."""
    if cfg.noise_dist is NoiseDist.gaussian:
        return 0.0, noise**2
    return noise / 2, noise**2 / 12


def synthetic_data(cfg: DataConfig, noise: float, n: int, gen: torch.Generator, dtype: torch.dtype,
                   X: torch.Tensor | None = None):
    """Return (X, y) with y = X w + b + noise; X is drawn unless given (a fixed design)."""
    X = sample_x(cfg, n, gen, dtype) if X is None else X
    w = torch.tensor(cfg.true_w, dtype=dtype)
    y = X @ w + cfg.true_b + sample_noise(cfg, noise, n, gen, dtype)
    return X, y


def make_dataset(cfg: DataConfig, noise: float, n_train: int, seeds: list[int], dtype: torch.dtype) -> Dataset:
    """One training set per replicate seed (n_train samples each); the test set comes from seeds[0], drawn from its
    generator after its training set (the other seeds draw none: their training sets come first either way)."""
    drawn: dict[int, tuple[torch.Tensor, ...]] = {}
    test: tuple[torch.Tensor, torch.Tensor] | None = None
    for seed in seeds:
        if seed not in drawn:
            gen = torch.Generator().manual_seed(seed)
            design = drawn[seeds[0]][0] if cfg.fixed_design and drawn else None  # only the noise is redrawn
            drawn[seed] = synthetic_data(cfg, noise, n_train, gen, dtype, design)
            if test is None:
                test = synthetic_data(cfg, noise, cfg.n_test, gen, dtype)
    X = torch.stack([drawn[s][0] for s in seeds])
    y = torch.stack([drawn[s][1] for s in seeds])
    return Dataset(X, y, *test)


def batch_indices(n: int, batch_size: int | None, steps: int, streaming: bool, seeds: list[int],
                  replacement: bool = False) -> torch.Tensor | None:
    """Row indices of every step's batch, shape (steps, R, batch_size); None means full batch.

    A fixed training set is visited as one endless stream of shuffled epochs cut into
    equal batches, so every step has the same batch size and an epoch is n / batch_size
    steps; with `replacement`, every index is drawn uniformly and independently instead
    (the sampling SGD's textbook noise assumes). Streaming data is used in the order it
    was drawn, each sample once.
    """
    if batch_size is None:
        return None
    total = steps * batch_size
    if streaming:
        return torch.arange(total).view(steps, 1, batch_size).expand(steps, len(seeds), batch_size)
    orders = {}
    for seed in dict.fromkeys(seeds):
        gen = torch.Generator().manual_seed(seed)
        if replacement:
            orders[seed] = torch.randint(n, (total,), generator=gen)
            continue
        epochs = -(-total // n)
        orders[seed] = torch.cat([torch.randperm(n, generator=gen) for _ in range(epochs)])[:total]
    return torch.stack([orders[s] for s in seeds], 1).view(steps, batch_size, len(seeds)).transpose(1, 2)
