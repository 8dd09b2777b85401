"""What adversarial imitation learners share (MAIL in pipeline/simulator/mail.py, the
re-ranking GAIL in pipeline/learners/ppo_mc/gail.py): the discriminator's cross-entropy step and
an RLlib training iteration whose rewards are rewritten between sampling and learning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
)
from torch import nn


def discriminator_step(
    discriminator: nn.Module,
    optimiser: torch.optim.Optimizer,
    generated,
    logged,
) -> dict[str, float]:
    """One step of min E_g[log R] + E_e[log(1 - R)] in its cross-entropy form, R the
    probability that an input is generated: generated inputs labelled 1, logged ones 0."""
    bce = nn.functional.binary_cross_entropy_with_logits
    fake, real = discriminator(generated), discriminator(logged)
    loss = bce(fake, torch.ones_like(fake)) + bce(real, torch.zeros_like(real))
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    accuracy = 0.5 * ((fake > 0).float().mean() + (real < 0).float().mean())
    return {"discriminator_loss": loss.item(), "discriminator_accuracy": accuracy.item()}


def set_episode_rewards(episodes, rewards: np.ndarray) -> None:
    """Replace the rewards of `episodes` by consecutive slices of `rewards`."""
    start = 0
    with warnings.catch_warnings():
        # RLlib checks each scalar reward against a Box space, which warns for non-arrays.
        warnings.filterwarnings("ignore", message=".*Casting input x to numpy array")
        for episode in episodes:
            # Episodes from remote env runners arrive as read-only views of the object store.
            episode.rewards.data = np.array(episode.rewards.data)
            episode.set_rewards(new_data=rewards[start : start + len(episode)])
            start += len(episode)


def relabelled_training_step(
    algo: Algorithm, relabel: Callable[[list], dict[str, float]], metrics_key: str
) -> None:
    """Sample, let `relabel(episodes)` train the discriminator and rewrite the rewards (it
    returns statistics, logged under `metrics_key`), update the learners, sync the runners."""
    config = algo.config
    episodes, runner_results = synchronous_parallel_sample(
        worker_set=algo.env_runner_group,
        max_env_steps=config.total_train_batch_size,
        sample_timeout_s=config.sample_timeout_s,
        _uses_new_env_runners=True,
        _return_metrics=True,
    )
    algo.metrics.aggregate(runner_results, key=ENV_RUNNER_RESULTS)
    for key, value in relabel(episodes).items():
        algo.metrics.log_value((metrics_key, key), value, window=1)
    learner_results = algo.learner_group.update(
        episodes=episodes,
        timesteps={
            NUM_ENV_STEPS_SAMPLED_LIFETIME: algo.metrics.peek(
                (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
            ),
            NUM_MODULE_STEPS_TRAINED_LIFETIME: algo.metrics.peek(
                (LEARNER_RESULTS, ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), default=0
            ),
        },
        num_epochs=config.num_epochs,
        minibatch_size=config.minibatch_size,
        shuffle_batch_per_epoch=config.shuffle_batch_per_epoch,
    )
    algo.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )
