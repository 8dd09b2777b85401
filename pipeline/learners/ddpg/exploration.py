"""DDPG's exploration: a = clip(μ(s) + k · x_t, low, high), k = (high − low) / 2.

The noise x_t follows the Ornstein-Uhlenbeck recursion of Lillicrap et al. (2015), with time
step 1 and mean 0,

    x_0 = 0 at the start of every episode,   x_t = x_{t−1} − θ · x_{t−1} + σ · ε_t,   ε_t ~ N(0, I)

and Gaussian noise is its memoryless case θ = 1 (x_t = σ · ε_t). σ is a fraction of the half
range k, as in CleanRL's `exploration_noise`.

The connector runs on the env runners between the RLModule and RLlib's `NormalizeAndClipActions`
and changes `Columns.ACTIONS`, so the replay buffer stores the noisy actions the env received.
x_t is kept per episode ID: each sub-env of a vector env steps its own episode, hence its own
process, and an episode that starts (reset or autoreset) starts from x_0 = 0. An episode cut
between two `sample()` calls keeps its ID and so its noise.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns

EXPLORATION_TYPES = ("gaussian", "ou")


class ExplorationNoise(ConnectorV2):
    """Adds Gaussian or OU noise to the module's actions when `explore` is True."""

    def __init__(
        self,
        input_observation_space: gym.Space | None = None,
        input_action_space: gym.Space | None = None,
        *,
        exploration: str,
        sigma: float,
        theta: float,
        **kwargs,
    ):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        if exploration not in EXPLORATION_TYPES:
            raise ValueError(f"exploration must be one of {EXPLORATION_TYPES}: {exploration!r}")
        self.sigma = sigma
        self.theta = 1.0 if exploration == "gaussian" else theta
        self.noise: dict[str, np.ndarray] = {}  # episode ID -> x_t

    def step_noise(self, previous: np.ndarray) -> np.ndarray:
        """x_t = x_{t−1} − θ · x_{t−1} + σ · ε_t, from numpy's global generator (which RLlib
        seeds on every env runner from `config.seed`)."""
        return (
            previous
            - self.theta * previous
            + self.sigma * np.random.standard_normal(previous.shape)
        )

    def __call__(
        self, *, rl_module, batch: dict[str, Any], episodes, explore=None, **kwargs
    ) -> dict[str, Any]:
        if not explore:
            return batch
        space = self.input_action_space
        scale = (space.high - space.low) / 2
        noise: dict[str, np.ndarray] = {}

        def perturb(action, episode_id, agent_id, module_id):
            previous = self.noise.get(episode_id, np.zeros(space.shape))
            noise[episode_id] = self.step_noise(previous)
            noisy = np.clip(action + scale * noise[episode_id], space.low, space.high)
            return noisy.astype(space.dtype)

        self.foreach_batch_item_change_in_place(batch, Columns.ACTIONS, perturb)
        self.noise = noise  # ongoing episodes only: finished ones are forgotten
        return batch
