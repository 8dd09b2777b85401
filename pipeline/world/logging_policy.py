"""The logging policy: small-norm random ranking weights, like the paper's random A/B bucket.

Paper ("Empirical Study"): the historical data came from "a random engine policy ... an online A/B
test bucket", and ("ANC") "the norms of most historical actions are relatively small". Each page
gets a fresh a ~ N(0, (scale^2 / action_dim) I), so E||a|| ~= scale, independent of the
observation. With the default scale the random part a . x_i is small next to the base relevance
rel_i (std `WorldParams.relevance_sd`), so logged pages stay close to the base ranking.
"""

from __future__ import annotations

import numpy as np

from pipeline.logs.schema import LogSpec
from pipeline.world.params import WorldParams

DEFAULT_SCALE: float = WorldParams.model_fields["logging_scale"].default


class LoggingPolicy:
    """obs (B, obs_dim) float32 -> actions (B, action_dim) float32, random with E||a|| ~= scale."""

    def __init__(self, spec: LogSpec, scale: float = DEFAULT_SCALE, seed: int = 0):
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.spec = spec
        self.scale = scale
        self._sigma = scale / np.sqrt(spec.action_dim)
        self._rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        noise = self._rng.standard_normal((obs.shape[0], self.spec.action_dim), dtype=np.float32)
        return noise * np.float32(self._sigma)
