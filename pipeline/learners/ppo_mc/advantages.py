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

With several learners (`num_learners` >= 2) RLlib's learner group deals the episodes to the
learners one at a time, so the lists of one request (consecutive sub-envs) end up on different
learners, and it may cut a list in two where a shard fills up. Each learner therefore gathers
every learner's rewards and reset infos (`torch.distributed.all_gather_object`), rebuilds the
whole lists, computes the advantages of the whole batch exactly as one learner would, and keeps
its own rows: the group baselines and the standard deviation are the single-learner ones.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from typing import Any, NamedTuple

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.evaluation.postprocessing import Postprocessing
from torch import distributed

from pipeline.rerank.rewards import returns_to_go


class Baseline(enum.StrEnum):
    NONE = "none"
    LOGGED = "logged"
    LOGGED_RATE = "logged_rate"
    GROUP = "group"


# The rate variant divides by L_t; a logged order the evaluator gives ~0 would explode it.
_MIN_LOGGED = 1e-3


# The reset infos the baselines read (rllib_envs/rerank.py).
_INFO_KEYS = ("draw", "logged_rewards")


class Piece(NamedTuple):
    """What the learners exchange about an episode, or a piece of one the learner group cut."""

    episode_id: str
    t_started: int
    rewards: np.ndarray
    infos: dict  # the reset infos (`_INFO_KEYS`); empty unless t_started == 0
    terminated: bool

    @classmethod
    def of(cls, episode) -> Piece:
        infos = episode.get_infos(0) if episode.t_started == 0 else {}
        return cls(
            episode.id_,
            episode.t_started,
            np.asarray(episode.get_rewards(), np.float64),
            {key: infos[key] for key in _INFO_KEYS if key in infos},
            bool(episode.is_terminated),
        )


class WholeList(NamedTuple):
    rewards: np.ndarray
    infos: dict  # the reset infos


def whole_lists(pieces: list[Piece]) -> dict[str, WholeList]:
    """The lists the pieces make up, by episode id, in the order of their first piece. Raises
    unless every list is whole: from t = 0, without a gap, terminated."""
    by_id: dict[str, list[Piece]] = defaultdict(list)
    for piece in pieces:
        by_id[piece.episode_id].append(piece)
    lists = {}
    for episode_id, parts in by_id.items():
        parts.sort(key=lambda part: part.t_started)
        t = 0
        for part in parts:
            if part.t_started != t:
                raise ValueError(
                    "list advantages need whole episodes: set batch_mode='complete_episodes' "
                    f"(got an episode chunk starting at t={part.t_started})"
                )
            t += len(part.rewards)
        if not parts[-1].terminated:
            raise ValueError(
                "list advantages need whole episodes: set batch_mode='complete_episodes' "
                f"(got an episode that is not terminated at t={t})"
            )
        rewards = np.concatenate([part.rewards for part in parts])
        lists[episode_id] = WholeList(rewards, parts[0].infos)
    return lists


def gather_pieces(local: list[Piece]) -> list[Piece]:
    """Every learner's pieces, in rank order (the same list on every learner); `local` itself
    without torch.distributed."""
    if not (distributed.is_available() and distributed.is_initialized()):
        return local
    if distributed.get_world_size() == 1:
        return local
    gathered: list[list[Piece] | None] = [None] * distributed.get_world_size()
    distributed.all_gather_object(gathered, local)
    return [piece for pieces in gathered for piece in pieces]


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
        local = [Piece.of(episode) for episode in episodes]
        lists = whole_lists(gather_pieces(local))  # all learners' lists (module docstring)
        returns = [returns_to_go(whole.rewards) for whole in lists.values()]
        flat = np.concatenate(returns)
        baseline = self._baseline(list(lists.values()), returns, flat)
        advantages = flat - baseline
        if self.baseline is Baseline.LOGGED_RATE:
            advantages /= np.maximum(baseline, _MIN_LOGGED)
        advantages /= max(1e-4, float(advantages.std()))
        # Back to this learner's rows: each piece's steps of its list, in the batch's order.
        starts = dict(zip(lists, np.cumsum([0, *map(len, returns)])[:-1], strict=True))
        rows = np.concatenate(
            [
                np.zeros(0, np.int64),  # a learner with no rows
                *(
                    np.arange(len(piece.rewards)) + starts[piece.episode_id] + piece.t_started
                    for piece in local
                ),
            ]
        )
        advantages, flat = advantages[rows], flat[rows]
        for module_id, module_batch in batch.items():
            device = next(rl_module[module_id].parameters()).device
            module_batch[Postprocessing.ADVANTAGES] = torch.as_tensor(
                advantages, dtype=torch.float32, device=device
            )
            module_batch[Postprocessing.VALUE_TARGETS] = torch.as_tensor(
                flat, dtype=torch.float32, device=device
            )
        return batch

    def _baseline(self, lists: list[WholeList], returns, flat: np.ndarray) -> np.ndarray:
        if self.baseline is Baseline.NONE:
            return np.zeros_like(flat)
        if self.baseline is Baseline.GROUP:
            return group_baselines([int(whole.infos["draw"]) for whole in lists], returns)
        return self._logged(lists)

    @staticmethod
    def _logged(lists: list[WholeList]) -> np.ndarray:
        """L_t: the logged order's return-to-go, from each list's reset infos."""
        return np.concatenate(
            [
                returns_to_go(np.asarray(whole.infos["logged_rewards"], np.float64))[
                    : len(whole.rewards)
                ]
                for whole in lists
            ]
        )
