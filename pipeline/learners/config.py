"""`ecomrl train`: the typed config of training a ranking policy in Virtual-Taobao."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.learners.anc import AncConfig
from pipeline.learners.registry import Algo
from pipeline.logs.schema import RewardColumn
from pipeline.simulator.config import Behaviour


class TrainConfig(BaseModel):
    """One learner in one simulator. Learner-specific settings (`settings`) go to RLlib's
    `AlgorithmConfig.training(...)` over the project's defaults (registry.PROJECT_DEFAULTS);
    an unknown name is an error before anything is built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algo: Algo = Field(Algo.TRPO, description="learner: ppo, trpo or ddpg")
    behaviour: Behaviour = Field(Behaviour.MAIL, description="customer policy: mail or bc")
    reward: RewardColumn = Field(RewardColumn.PURCHASE, description="paper: 1 per purchase")
    anc: AncConfig | None = Field(
        AncConfig(), description="action norm constraint (eq. 3); null trains without it"
    )
    env_steps: int = Field(200_000, ge=1, description="env steps to sample in all")
    num_envs_per_env_runner: int = Field(256, ge=1, description="customers stepped together")
    num_env_runners: int = Field(0, ge=0, description="remote env runners (0: in the driver)")
    num_learners: int = Field(0, ge=0, description="remote learners (0: in the driver)")
    num_gpus_per_learner: float = Field(0, ge=0)
    hidden: tuple[int, ...] = Field((64, 64), description="hidden layers of every network")
    initial_action_std: float | None = Field(
        None,
        gt=0,
        description="PPO/TRPO: the Gaussian policy's starting std per action dimension; "
        "default: the logged actions' scale (median norm / sqrt(action_dim))",
    )
    seed: int = Field(0, ge=0)
    settings: dict[str, Any] = Field(
        default_factory=dict, description="RLlib .training() settings of the learner"
    )
