"""PPO-MC and the REINFORCE family for list generation, as one RLlib Algorithm (seed,
"Strengthen the way of learning"; the five-learner comparison).

All are PPO's clipped surrogate with an entropy bonus over Monte-Carlo advantages of whole lists
(advantages.py); they differ in the baseline and the number of passes over a batch:

    learner                 baseline      epochs   (what the seed calls it)
    reinforce               NONE          1        REINFORCE
    reinforce_logged        LOGGED        1        REINFORCE minus the logged order's Q
    reinforce_logged_rate   LOGGED_RATE   1        REINFORCE with the change rate
    ppo_mc                  GROUP         several  PPO-MC: mean of several permutations

With one epoch over the whole batch the importance ratio is exactly 1 at the only gradient step,
so the clipped surrogate's gradient is A_t * grad log pi(a_t | s_t): REINFORCE's. No critic is
trained (`use_critic=False`); the seed's PPO with a critic is RLlib's own PPO.

Episodes must be whole lists (`batch_mode="complete_episodes"`); PPO-MC needs `group_size` > 1
in `ReRank-v0`'s env_config, so that each request is served to several sub-envs at once.

Data-parallel learners (`.learners(num_learners=2)`): PPO's gradients are averaged by RLlib's
DDP wrapper (told that the unused value head gets no gradient), and the list advantages are
computed over all learners' lists (advantages.py), so the update is the single-learner one.
"""

from __future__ import annotations

from typing import Self

from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.learner import AddOneTsToEpisodesAndTruncate, GeneralAdvantageEstimation
from ray.rllib.utils.annotations import override

from pipeline.learners.ppo_mc.advantages import Baseline, ListAdvantages


class PPOMCConfig(PPOConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PPOMC)
        self.baseline: Baseline = Baseline.GROUP
        self.use_critic = False
        self.use_kl_loss = False
        self.batch_mode = "complete_episodes"
        # With `num_learners` >= 2 RLlib wraps the module in torch DDP, which by default expects
        # a gradient for every parameter; the generator's value head gets none (no critic).
        self.torch_ddp_kwargs = {"find_unused_parameters": True}

    @override(PPOConfig)
    def training(self, *, baseline=NotProvided, **kwargs) -> Self:
        super().training(**kwargs)
        if baseline is not NotProvided:
            self.baseline = Baseline(baseline)
        return self

    @override(PPOConfig)
    def get_default_learner_class(self):
        return PPOMCTorchLearner

    @override(PPOConfig)
    def validate(self) -> None:
        super().validate()
        if self.use_critic:
            self._value_error("PPO-MC trains no critic: use_critic must be False")
        if self.batch_mode != "complete_episodes":
            self._value_error("PPO-MC needs whole lists: batch_mode='complete_episodes'")


class PPOMC(PPO):
    @classmethod
    @override(PPO)
    def get_default_config(cls) -> PPOMCConfig:
        return PPOMCConfig()


class PPOMCTorchLearner(PPOTorchLearner):
    """PPO's loss; the advantages come from `ListAdvantages` instead of GAE."""

    @override(PPOTorchLearner)
    def build(self) -> None:
        super().build()
        if self._learner_connector is not None:
            # PPO's pieces bootstrap a critic over truncated episodes; lists are whole.
            self._learner_connector.remove(AddOneTsToEpisodesAndTruncate)
            self._learner_connector.remove(GeneralAdvantageEstimation)
            self._learner_connector.append(ListAdvantages(baseline=self.config.baseline))
