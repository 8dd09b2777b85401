"""`ecomrl evaluate`: the typed config of a deployment evaluation."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    world_seed: int = Field(0, ge=0, description="seed of the world that wrote the logs")
    customers: int = Field(20_000, ge=100, description="sessions per deployment")
    days: tuple[int, ...] = Field(
        (0, 1, 7, 30), description="days after the logs to deploy at (paper: 1 day, week, month)"
    )
    seed: int = Field(0, ge=0, description="which customers come; the same for every policy")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals")
    scenario: str = Field("main_search", description="scenario to deploy in")

    @field_validator("days")
    @classmethod
    def _days(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if not days or days[0] != 0 or any(d < 0 for d in days) or list(days) != sorted(set(days)):
            raise ValueError("days must be increasing, distinct, and start at 0 (the logs' day)")
        return days
