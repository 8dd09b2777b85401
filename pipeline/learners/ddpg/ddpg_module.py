"""DDPG's RLModule: a deterministic actor μ(s), a critic Q(s, a) and their target copies.

    μ(s)    = b + k · tanh(f_θμ(s)),  k = (high − low) / 2,  b = (high + low) / 2
    Q(s, a) = f_θQ([s, (a − b) / k])    (the critic sees actions rescaled to [−1, 1])

For export: `forward_inference({"obs": obs})` returns the deterministic action μ(s) under
`Columns.ACTIONS`, already inside the Box bounds (no `ACTION_DIST_INPUTS`, no distribution
class). Exploration is the same forward pass: DDPG's noise, Gaussian or Ornstein-Uhlenbeck, is
added after the module by the env runner's `ExplorationNoise` connector (exploration.py), which
keeps the OU state per episode so that every sub-env of a vector env has its own noise process.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, QNetAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

DEFAULT_MODEL_CONFIG = {"actor_hidden": [256, 256], "critic_hidden": [256, 256]}

# `forward_train` outputs, read by the learner (ddpg_learner.py).
Q_VALUES = "q_values"  # Q(s, a) of the replayed actions
Q_TARGET_NEXT = "q_target_next"  # Q'(s', μ'(s'))
Q_POLICY = "q_policy"  # Q(s, μ(s)), differentiable in θμ only


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of `sizes` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _check_spaces(observation_space: gym.Space, action_space: gym.Space) -> None:
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(f"DDPG needs a Box observation space, got {observation_space}")
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(f"DDPG needs a 1-D Box action space, got {action_space}")
    if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
        raise ValueError(f"DDPG squashes actions into finite bounds, got {action_space}")


class DDPGTorchRLModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI, QNetAPI):
    """μ(s) and Q(s, a) as MLPs (`model_config`: `actor_hidden`, `critic_hidden`), plus the
    target networks μ' and Q' that the learner creates and Polyak-averages."""

    def setup(self) -> None:
        _check_spaces(self.observation_space, self.action_space)
        config = {**DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        obs_dim = int(np.prod(self.observation_space.shape))
        act_dim = self.action_space.shape[0]
        low = torch.as_tensor(self.action_space.low, dtype=torch.float32)
        high = torch.as_tensor(self.action_space.high, dtype=torch.float32)
        # Non-persistent buffers: they follow the module to its device but stay out of the
        # state dict (they are a function of the action space).
        self.register_buffer("action_scale", (high - low) / 2, persistent=False)
        self.register_buffer("action_bias", (high + low) / 2, persistent=False)
        self.actor = mlp([obs_dim, *config["actor_hidden"], act_dim])
        # Removed again by TorchRLModule when `inference_only` (env runners, export).
        self.critic = mlp([obs_dim + act_dim, *config["critic_hidden"], 1])

    def _mu(self, actor: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """μ(s) = b + k · tanh(f(s)): inside [low, high] by construction."""
        return self.action_bias + self.action_scale * torch.tanh(actor(obs.flatten(1)))

    def _q(self, critic: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) with a rescaled to [−1, 1]; shape (B,)."""
        unit_actions = (actions - self.action_bias) / self.action_scale
        return critic(torch.cat([obs.flatten(1), unit_actions], dim=-1)).squeeze(-1)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Inference and exploration: the deterministic action a = μ(s)."""
        return {Columns.ACTIONS: self._mu(self.actor, batch[Columns.OBS])}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """The three Q-values of the DDPG losses (ddpg_learner.py)."""
        obs = batch[Columns.OBS]
        # Q(s, μ(s)) through a detached copy of the critic's weights: the actor loss
        # −Q(s, μ(s)) then moves θμ along ∇a Q · ∇θμ μ and leaves θQ alone.
        frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
        frozen_critic = partial(torch.func.functional_call, self.critic, frozen)
        return {
            Q_VALUES: self.compute_q_values(batch),
            Q_TARGET_NEXT: self.forward_target({Columns.OBS: batch[Columns.NEXT_OBS]}),
            Q_POLICY: self._q(frozen_critic, obs, self._mu(self.actor, obs)),
        }

    def compute_q_values(self, batch: dict[str, Any]) -> torch.Tensor:
        """Q(s, a) for the batch's observations and actions (RLlib's `QNetAPI`)."""
        return self._q(self.critic, batch[Columns.OBS], batch[Columns.ACTIONS])

    def forward_target(self, batch: dict[str, Any]) -> torch.Tensor:
        """Q'(s, μ'(s)) from the target networks, without gradient (RLlib's
        `TargetNetworkAPI`)."""
        obs = batch[Columns.OBS]
        with torch.no_grad():
            return self._q(self.target_critic, obs, self._mu(self.target_actor, obs))

    def make_target_networks(self) -> None:
        """μ' ← μ, Q' ← Q (frozen copies; called by the learner once its module exists)."""
        self.target_actor = make_target_network(self.actor)
        self.target_critic = make_target_network(self.critic)

    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.actor, self.target_actor), (self.critic, self.target_critic)]

    def get_non_inference_attributes(self) -> list[str]:
        return ["critic", "target_actor", "target_critic"]
