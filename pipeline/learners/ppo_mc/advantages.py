"""Monte-Carlo advantages of whole lists (seed, "Strengthen the way of learning").

A list is an episode of exactly k steps with gamma = 1, so the return-to-go
G_t = sum_{t' >= t} r_t' (the seed's Q value of step t) is exact: no critic is needed. The
learners differ only in the baseline b_t subtracted from it:

    NONE         A_t = G_t                           REINFORCE (seed's first loss)
    LOGGED       A_t = G_t - L_t                     L_t: G_t of the LOGGED order of the same
                                                     candidates under the same evaluator
    LOGGED_RATE  A_t = (G_t - L_t) / L_t             "the change rate" variant
    GROUP        A_t = G_t - mean_{j != i} G_t^(j)   PPO-MC: the mean return of the other
                                                     permutations sampled for the same request

The GROUP mean leaves the episode itself out, so b_t does not depend on the episode's own
actions and the gradient stays unbiased. Advantages are divided by their batch standard
deviation (not centred: centring would itself be a baseline and erase the difference between
REINFORCE and its variants).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.evaluation.postprocessing import Postprocessing

from pipeline.rerank.rewards import returns_to_go


class Baseline(enum.StrEnum):
    NONE = "none"
    LOGGED = "logged"
    LOGGED_RATE = "logged_rate"
    GROUP = "group"


# The rate variant divides by L_t; a logged order the evaluator gives ~0 would explode it.
_MIN_LOGGED = 1e-3


def _complete(episode) -> None:
    if episode.t_started != 0 or not episode.is_terminated:
        raise ValueError(
            "list advantages need whole episodes: set batch_mode='complete_episodes' "
            f"(got an episode chunk starting at t={episode.t_started})"
        )


def group_baselines(draws: list[int], returns: list[np.ndarray]) -> np.ndarray:
    """Leave-one-out mean return-to-go per episode over the episodes of the same draw; an
    episode alone in its draw is its own baseline (advantage 0)."""
    members: dict[int, list[int]] = defaultdict(list)
    for index, draw in enumerate(draws):
        members[draw].append(index)
    baselines = [np.empty(0)] * len(returns)
    for indices in members.values():
        stacked = np.stack([returns[i] for i in indices])
        if len(indices) == 1:
            baselines[indices[0]] = stacked[0]
            continue
        others = (stacked.sum(0, keepdims=True) - stacked) / (len(indices) - 1)
        for row, i in enumerate(indices):
            baselines[i] = others[row]
    return np.concatenate(baselines)


class ListAdvantages(ConnectorV2):
    """Learner connector: ADVANTAGES (and VALUE_TARGETS = G_t, for RLlib's loss statistics)
    from whole episodes, in the row order of the batch (as RLlib's GAE piece does)."""

    def __init__(self, input_observation_space=None, input_action_space=None, *, baseline):
        super().__init__(input_observation_space, input_action_space)
        self.baseline = Baseline(baseline)

    def __call__(self, *, rl_module, episodes, batch: dict[str, Any], **kwargs):
        episodes = list(
            self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False)
        )
        for episode in episodes:
            _complete(episode)
        returns = [returns_to_go(np.asarray(e.get_rewards(), np.float64)) for e in episodes]
        flat = np.concatenate(returns)
        baseline = self._baseline(episodes, returns, flat)
        advantages = flat - baseline
        if self.baseline is Baseline.LOGGED_RATE:
            advantages /= np.maximum(baseline, _MIN_LOGGED)
        advantages /= max(1e-4, float(advantages.std()))
        for module_id, module_batch in batch.items():
            device = next(rl_module[module_id].parameters()).device
            module_batch[Postprocessing.ADVANTAGES] = torch.as_tensor(
                advantages, dtype=torch.float32, device=device
            )
            module_batch[Postprocessing.VALUE_TARGETS] = torch.as_tensor(
                flat, dtype=torch.float32, device=device
            )
        return batch

    def _baseline(self, episodes, returns, flat: np.ndarray) -> np.ndarray:
        if self.baseline is Baseline.NONE:
            return np.zeros_like(flat)
        if self.baseline is Baseline.GROUP:
            return group_baselines([int(e.get_infos(0)["draw"]) for e in episodes], returns)
        return self._logged(episodes)

    @staticmethod
    def _logged(episodes) -> np.ndarray:
        """L_t: the logged order's return-to-go, from each episode's reset infos."""
        return np.concatenate(
            [
                returns_to_go(np.asarray(e.get_infos(0)["logged_rewards"], np.float64))[: len(e)]
                for e in episodes
            ]
        )
