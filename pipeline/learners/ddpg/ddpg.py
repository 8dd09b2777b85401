"""DDPG (Lillicrap et al. 2015, "Continuous control with deep reinforcement learning") as an
RLlib algorithm on the new API stack; RLlib removed its own DDPG in 2.9.

Per iteration of `DDPG.training_step` (the off-policy loop of RLlib's DQN and SAC):

    1. sample env steps with a = clip(μ(s) + noise) (uniformly random actions until
       `num_steps_sampled_before_learning_starts`, as in CleanRL's `learning_starts`)
       and add the episodes to RLlib's episode replay buffer;
    2. after the warm-up, sample n-step transitions from the buffer and update the learner:
           critic  minimise (Q(s, a) − y)²,  y = r + γ(1 − d) Q'(s', μ'(s'))
           actor   maximise Q(s, μ(s))
           targets θ' ← τ θ + (1 − τ) θ'
       (ddpg_learner.py), then update a prioritized buffer's priorities from |y − Q(s, a)|;
    3. send the new actor weights to the env runners.

With `num_learners` >= 2 each learner actor updates on its shard of the replayed batch and RLlib's
`TorchDDPRLModule` (torch DDP) averages the actor's and critic's gradients, so the learners take
the same Adam steps and, from the same weights, the same soft target updates: no extra
synchronisation is needed. What DDPG adds is the priorities' order (`_learner_row_order`).

`DDPGConfig` subclasses `AlgorithmConfig`, not `SACConfig` or `DQNConfig`: those carry twin
Q-networks, entropy, epsilon-greedy and Rainbow settings that DDPG must not accept. What they
share with DDPG (RLlib's replay buffers, the next-observation learner connector and the replay
ratio `calculate_rr_weights`) is used directly.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.algorithms.dqn.dqn import calculate_rr_weights
from ray.rllib.connectors.common.add_observations_from_episodes_to_batch import (
    AddObservationsFromEpisodesToBatch,
)
from ray.rllib.connectors.learner.add_next_observations_from_episodes_to_train_batch import (
    AddNextObservationsFromEpisodesToTrainBatch,
)
from ray.rllib.connectors.module_to_env import NormalizeAndClipActions
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_RESULTS,
    REPLAY_BUFFER_SAMPLE_TIMER,
    REPLAY_BUFFER_UPDATE_PRIOS_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TD_ERROR_KEY,
    TIMERS,
)
from ray.rllib.utils.minibatch_utils import ShardEpisodesIterator
from ray.rllib.utils.numpy import convert_to_numpy
from ray.rllib.utils.replay_buffers import PrioritizedEpisodeReplayBuffer
from ray.rllib.utils.replay_buffers.utils import update_priorities_in_episode_replay_buffer
from ray.rllib.utils.typing import LearningRateOrSchedule

from pipeline.learners.ddpg.ddpg_learner import DDPGTorchLearner
from pipeline.learners.ddpg.ddpg_module import DDPGTorchRLModule
from pipeline.learners.ddpg.exploration import EXPLORATION_TYPES, ExplorationNoise


class DDPGConfig(AlgorithmConfig):
    """DDPG's settings, all set through `.training(...)`:

    tau (0.005)                  soft target update θ' ← τ θ + (1 − τ) θ'
    gamma (0.99)                 discount γ
    actor_lr (1e-3)              Adam learning rate (or schedule) of the actor μ
    critic_lr (1e-3)             Adam learning rate (or schedule) of the critic Q
    n_step (1)                   n of the n-step TD target
    exploration ("gaussian")     "gaussian" or "ou" (Ornstein-Uhlenbeck) action noise
    exploration_sigma (0.1)      noise σ, a fraction of the half action range (high − low) / 2
    ou_theta (0.15)              OU mean reversion θ ∈ (0, 1]
    replay_buffer_config         RLlib's `EpisodeReplayBuffer` (uniform, 1e6 steps) or
                                 `PrioritizedEpisodeReplayBuffer` (with `alpha`, `beta`)
    train_batch_size_per_learner (256)                 transitions per gradient step
    num_steps_sampled_before_learning_starts (1000)    random-action warm-up, no updates
    training_intensity (None)    replayed / sampled transitions; None: one update per
                                 `sample()` round (RLlib's DQN/SAC semantics)

    Networks: `.rl_module(model_config={"actor_hidden": [...], "critic_hidden": [...]})`
    (default [256, 256] each). The module emits actions in the env's bounds, so
    `normalize_actions` is False.
    """

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DDPG)
        self.tau: float = 0.005
        self.gamma: float = 0.99
        self.actor_lr: LearningRateOrSchedule = 1e-3
        self.critic_lr: LearningRateOrSchedule = 1e-3
        self.lr = None  # actor_lr and critic_lr instead
        self.n_step: int = 1
        self.exploration: str = "gaussian"
        self.exploration_sigma: float = 0.1
        self.ou_theta: float = 0.15
        self.replay_buffer_config: dict[str, Any] = {
            "type": "EpisodeReplayBuffer",
            "capacity": 1_000_000,
        }
        self.store_buffer_in_checkpoints: bool = False
        self.train_batch_size_per_learner = 256
        self.num_steps_sampled_before_learning_starts: int = 1000
        self.training_intensity: float | None = None
        self.rollout_fragment_length = "auto"  # n_step (get_rollout_fragment_length)
        # μ(s) is already in [low, high]: RLlib must not unsquash it from [−1, 1].
        self.normalize_actions = False
        self.clip_actions = False
        self.min_sample_timesteps_per_iteration = 1000
        self.evaluation(evaluation_config=AlgorithmConfig.overrides(explore=False))

    def training(
        self,
        *,
        tau: float = NotProvided,
        actor_lr: LearningRateOrSchedule = NotProvided,
        critic_lr: LearningRateOrSchedule = NotProvided,
        n_step: int = NotProvided,
        exploration: str = NotProvided,
        exploration_sigma: float = NotProvided,
        ou_theta: float = NotProvided,
        replay_buffer_config: dict[str, Any] = NotProvided,
        store_buffer_in_checkpoints: bool = NotProvided,
        num_steps_sampled_before_learning_starts: int = NotProvided,
        training_intensity: float | None = NotProvided,
        **kwargs,
    ) -> DDPGConfig:
        """DDPG's settings (see the class docstring) plus `AlgorithmConfig.training`'s."""
        settings = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        super().training(**kwargs)
        for key, value in settings.items():
            if value is NotProvided:
                continue
            if key == "replay_buffer_config":
                value = {**self.replay_buffer_config, **value}
            setattr(self, key, value)
        return self

    def validate(self) -> None:
        super().validate()
        if not (self.enable_rl_module_and_learner and self.enable_env_runner_and_connector_v2):
            self._value_error("DDPG runs on RLlib's new API stack only")
        if self.is_multi_agent:
            self._value_error("DDPG supports single-agent envs only")
        if self.framework_str != "torch":
            self._value_error(f"DDPG is torch-only, got framework={self.framework_str!r}")
        if self.lr is not None:
            self._value_error("DDPG uses actor_lr and critic_lr; leave `lr` None")
        if self.normalize_actions:
            self._value_error(
                "DDPG's actor emits actions in the env's bounds: set normalize_actions=False"
            )
        for message in self._invalid_settings():
            self._value_error(message)

    def _invalid_settings(self) -> list[str]:
        checks = {
            "tau must be in (0, 1]": 0 < self.tau <= 1,
            "gamma must be in [0, 1]": 0 <= self.gamma <= 1,
            "actor_lr must be > 0": not _is_number(self.actor_lr) or self.actor_lr > 0,
            "critic_lr must be > 0": not _is_number(self.critic_lr) or self.critic_lr > 0,
            "n_step must be an int >= 1": isinstance(self.n_step, int) and self.n_step >= 1,
            f"exploration must be one of {EXPLORATION_TYPES}": (
                self.exploration in EXPLORATION_TYPES
            ),
            "exploration_sigma must be >= 0": self.exploration_sigma >= 0,
            "ou_theta must be in (0, 1]": 0 < self.ou_theta <= 1,
            "num_steps_sampled_before_learning_starts must be >= 0": (
                self.num_steps_sampled_before_learning_starts >= 0
            ),
            "training_intensity must be None or > 0": (
                self.training_intensity is None or self.training_intensity > 0
            ),
            "replay_buffer_config['type'] must name an RLlib episode replay buffer, e.g. "
            "'EpisodeReplayBuffer' or 'PrioritizedEpisodeReplayBuffer'": (
                isinstance(self.replay_buffer_config.get("type"), str)
                and self.replay_buffer_config["type"].endswith("EpisodeReplayBuffer")
            ),
            "replay_buffer_config['capacity'] must be > 0": (
                self.replay_buffer_config.get("capacity", 1) > 0
            ),
        }
        return [message for message, ok in checks.items() if not ok]

    def get_rollout_fragment_length(self, worker_index: int = 0) -> int:
        """`rollout_fragment_length="auto"`: n_step env steps per sub-env per `sample()` call, as
        in DQN and SAC."""
        if self.rollout_fragment_length == "auto":
            return self.n_step
        return self.rollout_fragment_length

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DDPGTorchRLModule)

    def get_default_learner_class(self) -> type[DDPGTorchLearner]:
        return DDPGTorchLearner

    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        """RLlib's default learner connectors plus s' (`Columns.NEXT_OBS`), as SAC's."""
        pipeline = super().build_learner_connector(
            input_observation_space, input_action_space, device
        )
        pipeline.insert_after(
            AddObservationsFromEpisodesToBatch, AddNextObservationsFromEpisodesToTrainBatch()
        )
        return pipeline

    def build_module_to_env_connector(self, env=None, spaces=None):
        """RLlib's default module-to-env connectors with the exploration noise added to
        `Columns.ACTIONS` before `NormalizeAndClipActions`."""
        pipeline = super().build_module_to_env_connector(env, spaces)
        noise = ExplorationNoise(
            exploration=self.exploration, sigma=self.exploration_sigma, theta=self.ou_theta
        )
        pipeline.insert_before(NormalizeAndClipActions, noise)
        return pipeline


def _is_number(value) -> bool:
    return isinstance(value, int | float)


class DDPG(Algorithm):
    """DDPG's off-policy training loop; see the module docstring."""

    @classmethod
    def get_default_config(cls) -> DDPGConfig:
        return DDPGConfig()

    def setup(self, config: DDPGConfig) -> None:
        super().setup(config)
        if self.config.seed is not None:
            self._seed_replay_and_warm_up(self.config.seed)

    def _seed_replay_and_warm_up(self, seed: int) -> None:
        """RLlib leaves the buffer's sampler and the env's action space (the warm-up's random
        actions) unseeded; seed both so that a run with `config.seed` is reproducible."""
        self.local_replay_buffer.rng = np.random.default_rng(seed)

        def seed_action_space(runner) -> None:
            if runner.env is not None:
                runner.env.action_space.seed(seed + runner.worker_index)

        self.env_runner_group.foreach_env_runner(seed_action_space)

    def training_step(self) -> None:
        """Sample into the buffer, then (after the warm-up) update from it and sync weights."""
        store_rounds, update_rounds = calculate_rr_weights(self.config)
        for _ in range(store_rounds):
            self._sample_into_buffer()
        if self._warming_up():
            return
        for _ in range(update_rounds):
            self._update_from_buffer()
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group, inference_only=True
            )

    def _env_steps_sampled(self) -> int:
        return self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)

    def _warming_up(self) -> bool:
        """Before `num_steps_sampled_before_learning_starts`: random actions, no updates."""
        return self._env_steps_sampled() < self.config.num_steps_sampled_before_learning_starts

    def _sample_into_buffer(self) -> None:
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                concat=True,
                sample_timeout_s=self.config.sample_timeout_s,
                random_actions=self._warming_up(),
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            self.local_replay_buffer.add(episodes)

    def _update_from_buffer(self) -> None:
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
            episodes = self.local_replay_buffer.sample(
                num_items=self.config.total_train_batch_size,
                n_step=self.config.n_step,
                gamma=self.config.gamma,
                beta=self.config.replay_buffer_config.get("beta", 0.0),
                sample_episodes=True,
            )
        self.metrics.aggregate([self.local_replay_buffer.get_metrics()], key=REPLAY_BUFFER_RESULTS)
        order = self._learner_row_order(episodes)
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self._env_steps_sampled()},
            )
        td_errors = _pop_td_errors(learner_results, order)
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_UPDATE_PRIOS_TIMER)):
            update_priorities_in_episode_replay_buffer(
                replay_buffer=self.local_replay_buffer, td_errors=td_errors
            )

    def _learner_row_order(self, episodes: list) -> np.ndarray | None:
        """For a prioritized buffer with `num_learners` >= 2: the position in `episodes` (the
        buffer's sampling order, which its priority update expects) of each row of the learners'
        |δ|, concatenated in learner order. None where that is already the sampling order.

        The learner group shards the episodes with RLlib's `ShardEpisodesIterator` (sorted by
        length, each dealt to the shortest shard: n-step transitions, all of length 1, go to
        the learners in turn); the same iterator on the same list gives the same shards here."""
        if len(self.learner_group) < 2 or not isinstance(
            self.local_replay_buffer, PrioritizedEpisodeReplayBuffer
        ):
            return None
        position = {episode.id_: i for i, episode in enumerate(episodes)}
        shards = ShardEpisodesIterator(
            episodes,
            num_shards=len(self.learner_group),
            len_lookback_buffer=self.config.episode_lookback_horizon,
        )
        order = np.asarray([position[e.id_] for shard in shards for e in shard])
        # A transition cut in two (never, at length 1) would leave its rows unmatched.
        if sorted(order.tolist()) != list(range(len(episodes))):
            raise RuntimeError("DDPG: the learner shards are not whole sampled transitions")
        return order


def _pop_td_errors(
    learner_results: list[dict], order: np.ndarray | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """The per-row |δ| of every module, taken out of the results (too large to log), in the
    order the buffer sampled the rows: `order[j]` is where row j of the learners' concatenated
    results was sampled (None: already in that order)."""
    td_errors = defaultdict(list)
    for results in learner_results:
        for module_id, module_results in results.items():
            if TD_ERROR_KEY in module_results:
                td_errors[module_id].extend(
                    convert_to_numpy(module_results.pop(TD_ERROR_KEY).peek())
                )
    out = {}
    for module_id, errors in td_errors.items():
        errors = np.concatenate(errors, axis=0)
        if order is not None:
            errors[order] = errors.copy()
        out[module_id] = {TD_ERROR_KEY: errors}
    return out
