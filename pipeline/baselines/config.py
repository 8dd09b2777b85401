"""Typed config of the supervised baselines SL1 and SL2 (paper, "Comparison with supervised
learning": equations 4 and 5, lambda1 = 0.3 and lambda2 = 0.001)."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field


class SupervisedKind(enum.StrEnum):
    SL1 = "sl1"  # eq. 4: regress on the records with purchase only
    SL2 = "sl2"  # eq. 5: near the actions that sold, away from those that did not


class SupervisedConfig(BaseModel):
    """`train_supervised`: an engine policy pi(s) -> a fitted on the logged engine transitions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SupervisedKind = Field(SupervisedKind.SL1, description="sl1 (eq. 4) or sl2 (eq. 5)")
    lambda1: float = Field(0.3, ge=0, description="eq. 5: weight of the pull away from S0")
    lambda2: float = Field(0.001, ge=0, description="eq. 5: weight of the action norm penalty")
    hidden: tuple[int, ...] = Field((128, 128), description="hidden layers of the policy MLP")
    epochs: int = Field(20, ge=1, description="passes over the training rows")
    batch_size: int = Field(1024, ge=2, description="rows per Adam step")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    seed: int = Field(0, ge=0, description="initial weights and the order of the rows")
    scenario: str = Field("main_search", description="scenario of the logs to learn from")
    max_steps: int | None = Field(None, ge=1, description="stop after this many Adam steps")
    shuffle_buffer: int = Field(
        16_384, ge=1, description="rows of the shuffle buffer between the object store and Adam"
    )
