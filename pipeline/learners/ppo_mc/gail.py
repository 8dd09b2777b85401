"""The GAIL variant of the re-ranker (seed, "GAIL reinforcement learning rearrangement").

Each iteration: sample lists with the generator (which explores: with probability 0.2 a step
picks a uniformly random remaining candidate, `GeneratorConfig.exploration_epsilon`), measure how
well the discriminator tells them from logged lists (its AUC, before it trains on them), train the
discriminator on them and on logged lists, then pay the generator

    r_t = evaluator_weight * r_t^evaluator + [t = k - 1] * discriminator_weight * (-logit R(list))

(-logit R > 0 when the list looks logged), and run PPO-MC's update. `evaluator_weight = 0` is the
seed's plain GAIL (imitate the logged lists only); both weights > 0 is its combined version.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import torch
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.utils.annotations import override

from pipeline.learners.adversarial import (
    discriminator_step,
    relabelled_training_step,
    set_episode_rewards,
)
from pipeline.learners.ppo_mc.ppo_mc import PPOMC, PPOMCConfig
from pipeline.rerank.discriminator import ListDiscriminator, discriminator_auc, imitation_reward

_SETTINGS = (
    "evaluator_weight",
    "discriminator_weight",
    "discriminator_lr",
    "discriminator_steps",
    "discriminator_batch_size",
    "discriminator_hidden",
)


class RerankGAILConfig(PPOMCConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or RerankGAIL)
        self.evaluator_weight: float = 1.0
        self.discriminator_weight: float = 0.1
        self.discriminator_lr: float = 1e-3
        self.discriminator_steps: int = 5
        self.discriminator_batch_size: int = 512
        self.discriminator_hidden: int = 32

    def gail(self, **settings) -> Self:
        """Set any of `_SETTINGS` (NotProvided leaves a setting as it is)."""
        unknown = set(settings) - set(_SETTINGS)
        if unknown:
            raise ValueError(f"unknown GAIL settings {sorted(unknown)}; known: {_SETTINGS}")
        for name, value in settings.items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self


def _episode_lists(episodes) -> dict[str, torch.Tensor]:
    """The generated lists: each episode's customer and candidates (its first observation) and
    its actions, the order placed top first."""
    first = [episode.get_observations(0)["observations"] for episode in episodes]
    return {
        "user": torch.as_tensor(np.stack([o["user"] for o in first])),
        "items": torch.as_tensor(np.stack([o["items"] for o in first])),
        "order": torch.as_tensor(np.stack([np.asarray(e.get_actions()) for e in episodes])),
    }


class RerankGAIL(PPOMC):
    @classmethod
    @override(PPOMC)
    def get_default_config(cls) -> RerankGAILConfig:
        return RerankGAILConfig()

    @override(PPOMC)
    def setup(self, config) -> None:
        super().setup(config)
        from rllib_envs.rerank import ReRankConfig, served_requests

        env = ReRankConfig.parse({**self.config.env_config, "num_envs": 1, "group_size": 1})
        logged = served_requests(env)  # the requests the generator is trained on
        self._logged = {
            "user": torch.as_tensor(logged.user),
            "items": torch.as_tensor(logged.items),
            "order": torch.as_tensor(logged.shown),
        }
        self.discriminator = ListDiscriminator(
            logged.user.shape[1], logged.items.shape[2], self.config.discriminator_hidden
        )
        self._d_optimiser = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.config.discriminator_lr
        )
        self._rng = torch.Generator().manual_seed(self.config.seed or 0)

    def _sample(self, lists: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
        index = torch.randint(len(lists["order"]), (size,), generator=self._rng)
        return {key: value[index] for key, value in lists.items()}

    def _relabel(self, episodes) -> dict[str, float]:
        generated = _episode_lists(episodes)
        size = self.config.discriminator_batch_size
        stats = {
            "discriminator_auc": discriminator_auc(
                self.discriminator, generated, self._sample(self._logged, len(generated["order"]))
            )
        }
        for _ in range(self.config.discriminator_steps):
            fake, real = self._sample(generated, size), self._sample(self._logged, size)
            stats.update(discriminator_step(self.discriminator, self._d_optimiser, fake, real))
        imitation = imitation_reward(self.discriminator, generated)
        rewards = []
        for episode, bonus in zip(episodes, imitation, strict=True):
            reward = self.config.evaluator_weight * np.asarray(episode.get_rewards(), np.float64)
            reward[-1] += self.config.discriminator_weight * bonus
            rewards.append(reward)
        set_episode_rewards(episodes, np.concatenate(rewards))
        stats["imitation_reward_mean"] = float(imitation.mean())
        return stats

    @override(PPOMC)
    def training_step(self) -> None:
        relabelled_training_step(self, self._relabel, "gail")
