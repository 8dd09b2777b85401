"""Typed configs of `ecomrl rerank train`: the evaluators, then one generator training per run.

A study is a set of named runs, each a `GeneratorTrainConfig` = the shared `defaults` updated by
the run's own settings; the default study is the issue's comparison: the seed's five learners
plus GAIL (PAY reward, trained on 30-candidate requests), PPO-MC trained on 17 candidates, and
PPO-MC with the GMV and PAY_GMV rewards.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.config import FrozenConfig, Profile, merge_settings
from pipeline.rerank.rewards import RewardKind


class EvaluatorConfig(BaseModel):
    """Network sizes and training of a list evaluator.

    Defaults were tuned on 16k logged requests of the reference world (2 cores, all four kinds
    in about 1.5 minutes): held-out pay AUC flattens after ~25 epochs, weight decay 1e-4 keeps the
    CONTEXT and CAUSAL models from overfitting, and up-weighting the pay loss (2, 4) lowered
    the pay AUC (the click head is a helpful auxiliary task as it is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: tuple[int, ...] = Field((64, 64), min_length=1, description="scoring MLP widths")
    rnn_hidden: int = Field(32, ge=1, description="GRU state size (CONTEXT, CAUSAL)")
    cnn_channels: int = Field(16, ge=1, description="1-D CNN output channels (CONTEXT)")
    cnn_kernel: int = Field(3, ge=1, description="CNN kernel width in positions; odd")
    max_positions: int = Field(
        32, ge=1, description="positions with a learned embedding of their own; later ones share"
    )
    epochs: int = Field(30, ge=1, description="passes over the training requests")
    batch_size: int = Field(256, ge=1, description="requests per minibatch")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate, annealed to 0 by a cosine")
    weight_decay: float = Field(1e-4, ge=0, description="Adam L2 penalty on weights (not biases)")
    pay_weight: float = Field(
        1.0, gt=0, description="weight of the pay BCE next to the click BCE in the loss"
    )
    seed: int = Field(0, description="seeds the initial weights and the minibatch order")

    @field_validator("cnn_kernel")
    @classmethod
    def _odd(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise ValueError("cnn_kernel must be odd so the CNN keeps one output per position")
        return kernel


class GeneratorConfig(BaseModel):
    """The generator's networks and exploration; the RLModule's `model_config` keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: tuple[int, ...] = Field(
        (64, 64),
        min_length=1,
        description="policy scorer's hidden widths per candidate; the chosen set joins the last",
    )
    value_hidden: tuple[int, ...] = Field(
        (64,), min_length=1, description="critic scorer's hidden widths per candidate"
    )
    exploration_epsilon: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="probability of a uniformly random remaining candidate while exploring "
        "and training (the seed's GAIL variant uses 0.2); inference stays greedy",
    )


class RerankLearner(enum.StrEnum):
    REINFORCE = "reinforce"
    REINFORCE_LOGGED = "reinforce_logged"
    REINFORCE_LOGGED_RATE = "reinforce_logged_rate"
    PPO = "ppo"
    PPO_MC = "ppo_mc"
    GAIL = "gail"


class GailConfig(FrozenConfig):
    """The GAIL variant (pipeline/learners/ppo_mc/gail.py)."""

    evaluator_weight: float = Field(1.0, ge=0, description="weight of the evaluator's reward")
    discriminator_weight: float = Field(
        0.1, ge=0, description="weight of the discriminator's -logit R, paid at the last step"
    )
    discriminator_lr: float = Field(1e-3, gt=0)
    discriminator_steps: int = Field(5, ge=1, description="discriminator updates per iteration")
    discriminator_batch_size: int = Field(512, ge=1)
    discriminator_hidden: int = Field(32, ge=1)
    exploration_epsilon: float = Field(
        0.2, ge=0, lt=1, description="seed: a random remaining candidate with probability 0.2"
    )


class GeneratorTrainConfig(FrozenConfig):
    """One generator trained on `ReRank-v0` by one learner."""

    learner: RerankLearner = Field(RerankLearner.PPO_MC, description="see RerankLearner")
    reward: RewardKind = Field(RewardKind.PAY, description="pay, gmv or pay_gmv")
    gmv_weight: float = Field(0.5, ge=0, le=1, description="w of pay_gmv")
    train_sizes: tuple[int, ...] | None = Field(
        (30,), description="candidate-list sizes n of the training requests (null: all)"
    )
    env_steps: int = Field(
        32 * 256 * 17, ge=1, description="env steps (placed items) in all: 32 batches of lists"
    )
    num_envs: int = Field(256, ge=1, description="lists built together per env runner")
    group_size: int = Field(
        8, ge=2, description="PPO-MC and GAIL: permutations sampled per request"
    )
    num_env_runners: int = Field(0, ge=0, description="remote env runners (0: in the driver)")
    num_learners: int = Field(0, ge=0, description="data-parallel learners (0: in the driver)")
    num_gpus_per_learner: float = Field(0, ge=0)
    lr: float = Field(1e-3, gt=0)
    entropy_coeff: float = Field(0.01, ge=0, description="the same entropy bonus for all")
    num_epochs: int = Field(2, ge=1, description="PPO, PPO-MC, GAIL: passes over a batch")
    minibatch_size: int = Field(1024, ge=1, description="PPO, PPO-MC, GAIL")
    generator: GeneratorConfig = GeneratorConfig()
    gail: GailConfig = GailConfig()
    eval_requests: int = Field(
        500, ge=1, description="held-out requests scored (BP) after every iteration"
    )
    seed: int = Field(0, ge=0)


# The default study: run name -> its settings over `RerankConfig.defaults`.
DEFAULT_RUNS: dict[str, dict[str, Any]] = {
    "reinforce": {"learner": "reinforce"},
    "reinforce_logged": {"learner": "reinforce_logged"},
    "reinforce_logged_rate": {"learner": "reinforce_logged_rate"},
    "ppo": {"learner": "ppo"},
    "ppo_mc": {"learner": "ppo_mc"},
    "gail": {"learner": "gail"},
    "ppo_mc_n17": {"learner": "ppo_mc", "train_sizes": (17,)},
    "ppo_mc_gmv": {"learner": "ppo_mc", "reward": "gmv"},
    "ppo_mc_pay_gmv": {"learner": "ppo_mc", "reward": "pay_gmv"},
}


class RerankConfig(FrozenConfig):
    """`ecomrl rerank train`: evaluators on the logged lists, then every run of the study."""

    k: int = Field(17, ge=1, description="items per list (the logged lists show k)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share of requests")
    split_seed: int = Field(0, ge=0, description="seeds the train/test split of requests")
    evaluator: EvaluatorConfig = EvaluatorConfig()
    defaults: GeneratorTrainConfig = GeneratorTrainConfig()
    runs: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: dict(DEFAULT_RUNS),
        description="run name -> settings over `defaults`",
    )

    @model_validator(mode="after")
    def _valid_runs(self) -> RerankConfig:
        if not self.runs:
            raise ValueError("runs: at least one run is needed")
        for name in self.runs:
            self.run(name)  # raises on a bad setting, naming the run
        return self

    def run(self, name: str) -> GeneratorTrainConfig:
        """The full config of run `name`."""
        if name not in self.runs:
            raise ValueError(f"unknown run {name!r}; the study has {sorted(self.runs)}")
        try:
            return GeneratorTrainConfig.model_validate(
                merge_settings(self.defaults.model_dump(), self.runs[name])
            )
        except ValueError as exc:
            raise ValueError(f"runs.{name}: {exc}") from exc


# `ecomrl rerank train --profile quick`: every run on a budget, a smoke test of the whole study
# (its numbers mean little). Applied under the YAML file and the command-line options.
RERANK_PROFILES: dict[Profile, dict] = {
    Profile.DEFAULT: {},
    Profile.QUICK: {
        "evaluator": {"epochs": 1},
        "defaults": {"env_steps": 2 * 64 * 17, "num_envs": 64, "eval_requests": 200},
    },
}
