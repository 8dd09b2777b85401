"""The learners by name: `ppo` (RLlib's), `trpo` and `ddpg` (pipeline/learners/trpo, ddpg).

`algorithm_config(algo)` is the RLlib config class with this project's defaults for ranking in
Virtual-Taobao on top of RLlib's own (RLlib's PPO defaults, 30 epochs of 128-row minibatches,
are sized for Atari-like budgets and run ~10x slower here for no gain in return).
"""

from __future__ import annotations

import enum
from typing import Any


class Algo(enum.StrEnum):
    PPO = "ppo"
    TRPO = "trpo"
    DDPG = "ddpg"


# `.training(...)` settings per learner, applied before the user's own (TrainConfig.settings).
PROJECT_DEFAULTS: dict[Algo, dict[str, Any]] = {
    Algo.PPO: {
        "train_batch_size_per_learner": 8192,
        "minibatch_size": 2048,
        "num_epochs": 4,
        "lr": 3e-4,
        "entropy_coeff": 0.0,
    },
    Algo.TRPO: {"train_batch_size_per_learner": 8192},
    Algo.DDPG: {},
}


def algorithm_config(algo: Algo):
    """A fresh RLlib `AlgorithmConfig` of `algo` with the project's defaults."""
    if algo is Algo.PPO:
        from ray.rllib.algorithms.ppo import PPOConfig

        config = PPOConfig()
    elif algo is Algo.TRPO:
        from pipeline.learners.trpo import TRPOConfig

        config = TRPOConfig()
    else:
        from pipeline.learners.ddpg import DDPGConfig

        config = DDPGConfig()
    return config.training(**PROJECT_DEFAULTS[algo])
