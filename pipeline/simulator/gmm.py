"""The GMM baseline of Table 1: a Gaussian mixture on the codec vectors ("the cluster number of
GMM was carefully chosen to 10"), stored as tensors so it loads like the generators."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from torch import nn

from pipeline.simulator.config import GmmConfig
from pipeline.weights import loadable

# EM with full covariances costs O(rows * components * dim^2) per iteration: fitting on at most
# this many rows bounds the fit time, and 50k rows estimate a 10-component mixture well.
MAX_ROWS = 50_000
REG_COVAR = 1e-3  # one-hot columns are degenerate (a group's columns sum to 1): keep Sigma PD


@loadable
class GaussianMixtureSampler(nn.Module):
    """Samples of a fitted full-covariance mixture: component k ~ weights, then
    mean_k + L_k eps with L_k the Cholesky factor of Sigma_k. The draws are continuous;
    `CustomerCodec.decode` takes each group's argmax."""

    def __init__(self, components: int, dim: int):
        super().__init__()
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("cholesky", torch.eye(dim).repeat(components, 1, 1))

    @torch.no_grad()
    def sample_vectors(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn((n, self.means.shape[1]), generator=generator)
        out = torch.empty_like(eps)
        # Per component, not a gathered (n, D, D) batch of factors: that would not fit in memory.
        for k in range(len(self.weights)):
            rows = component == k
            out[rows] = self.means[k] + eps[rows] @ self.cholesky[k].T
        return out


def fit(vectors: np.ndarray, config: GmmConfig, seed: int) -> tuple[GaussianMixtureSampler, dict]:
    """EM on (a subsample of) the codec vectors; the sampler and EM's diagnostics."""
    if len(vectors) > MAX_ROWS:
        rows = np.random.default_rng(seed).choice(len(vectors), MAX_ROWS, replace=False)
        vectors = vectors[rows]
    mixture = GaussianMixture(
        config.components,
        covariance_type="full",
        reg_covar=REG_COVAR,
        max_iter=config.max_iter,
        random_state=seed,
    )
    with warnings.catch_warnings():  # a fit cut short by max_iter is reported in the metrics
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(vectors.astype(np.float64))
    sampler = GaussianMixtureSampler(config.components, vectors.shape[1])
    sampler.weights.copy_(torch.as_tensor(mixture.weights_))
    sampler.means.copy_(torch.as_tensor(mixture.means_))
    sampler.cholesky.copy_(torch.as_tensor(np.linalg.cholesky(mixture.covariances_)))
    metrics = {
        "lower_bound": float(mixture.lower_bound_),
        "em_iterations": float(mixture.n_iter_),
        "converged": float(mixture.converged_),
    }
    return sampler.eval(), metrics
