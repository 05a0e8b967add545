"""Synthetic data recipes, y = X w + b + noise, and the order in which batches are drawn.

Everything is drawn on the CPU from explicit generators, so a seed gives the same
numbers on every device, then moved once to the training device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from linreg_lab.config import DataConfig, NoiseDist, XDist


@dataclass
class Dataset:
    """Training and held-out data; for streaming data X holds every sample drawn, in order."""

    X: torch.Tensor  # (n, d)
    y: torch.Tensor  # (n,)
    X_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device: torch.device) -> Dataset:
        return Dataset(*(t.to(device) for t in (self.X, self.y, self.X_test, self.y_test)))


def sample_x(cfg: DataConfig, n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Draw n inputs with len(true_w) features from the configured x distribution."""
    d = len(cfg.true_w)
    if cfg.x_dist is XDist.normal:
        return cfg.x_mean + cfg.x_std * torch.randn(n, d, generator=gen, dtype=dtype)
    if cfg.x_dist is XDist.uniform:
        return cfg.x_low + (cfg.x_high - cfg.x_low) * torch.rand(n, d, generator=gen, dtype=dtype)
    grid = torch.linspace(cfg.x_low, cfg.x_high, n, dtype=dtype)
    return grid.unsqueeze(1).repeat(1, d)


def sample_noise(cfg: DataConfig, noise: float, n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Noise of scale `noise`: gaussian has mean 0, uniform U[0, 1) has mean noise / 2."""
    if cfg.noise_dist is NoiseDist.gaussian:
        return noise * torch.randn(n, generator=gen, dtype=dtype)
    return noise * torch.rand(n, generator=gen, dtype=dtype)


def synthetic_data(cfg: DataConfig, noise: float, n: int, gen: torch.Generator, dtype: torch.dtype):
    """Return (X, y) with y = X w + b + noise."""
    X = sample_x(cfg, n, gen, dtype)
    w = torch.tensor(cfg.true_w, dtype=dtype)
    y = X @ w + cfg.true_b + sample_noise(cfg, noise, n, gen, dtype)
    return X, y


def make_dataset(cfg: DataConfig, noise: float, n_train: int, seed: int, dtype: torch.dtype) -> Dataset:
    """Draw the training set (n_train samples) and then the test set from one seeded stream."""
    gen = torch.Generator().manual_seed(seed)
    X, y = synthetic_data(cfg, noise, n_train, gen, dtype)
    X_test, y_test = synthetic_data(cfg, noise, cfg.n_test, gen, dtype)
    return Dataset(X, y, X_test, y_test)


def batch_indices(n: int, batch_size: int | None, steps: int, streaming: bool, seed: int) -> torch.Tensor | None:
    """Row indices of every step's batch, shape (steps, batch_size); None means full batch.

    A fixed training set is visited as one endless stream of shuffled epochs cut into
    equal batches, so every step has the same batch size and an epoch is n / batch_size
    steps. Streaming data is used in the order it was drawn, each sample once.
    """
    if batch_size is None:
        return None
    total = steps * batch_size
    if streaming:
        return torch.arange(total).view(steps, batch_size)
    gen = torch.Generator().manual_seed(seed)
    epochs = -(-total // n)
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(epochs)])
    return order[:total].view(steps, batch_size)
