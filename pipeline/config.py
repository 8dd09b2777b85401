"""Typed configs of the pipeline's stages and their defaults: the one source of truth.

The CLI reads its option defaults from here, `ecomrl run --config FILE` overrides them from a
YAML file validated on load (unknown keys and bad values are errors naming the key).
"""

from __future__ import annotations

import datetime
import enum
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.baselines.config import SupervisedConfig
from pipeline.errors import UserError
from pipeline.evaluation.config import EvaluationConfig
from pipeline.learners.config import TrainConfig
from pipeline.logs.schema import LogSpec, RewardColumn
from pipeline.simulator.config import SimulatorConfig

M = TypeVar("M", bound=BaseModel)


class OnBadFile(enum.StrEnum):
    FAIL = "fail"
    QUARANTINE = "quarantine"


class FrozenConfig(BaseModel):
    """A config section: unknown keys are errors, values never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerateConfig(FrozenConfig):
    """`ecomrl logs generate`: logs written by the reference world under its logging policy."""

    sessions: int = Field(20_000, ge=1, description="main-search sessions over all days")
    days: int = Field(1, ge=1, description="days of logs, one date partition each")
    seed: int = Field(0, ge=0, description="world and logging seed; same seed, same bytes")
    start_date: datetime.date = Field(datetime.date(2026, 1, 1), description="first date")
    overwrite: bool = Field(False, description="replace an existing output directory")


class IngestConfig(FrozenConfig):
    """`ecomrl logs ingest`: validate, quarantine, shard by user and write training tables."""

    shards: int = Field(4, ge=1, description="output shards (by user id hash)")
    reward: RewardColumn = Field(RewardColumn.PURCHASE, description="feedback column used as r")
    on_bad_file: OnBadFile = Field(
        OnBadFile.FAIL,
        description="an unreadable file or one of another schema version: stop the run, or "
        "record it in the quarantine table and go on with the other files",
    )
    rows_per_bucket: int = Field(
        250_000,
        ge=1_000,
        description="page views grouped per sessionising task; bounds each task's memory",
    )
    rerank_k: int = Field(
        17,
        ge=1,
        description="k: positions shown per re-ranking request; a request with fewer than k "
        "candidates or a shown_order of another length is quarantined",
    )
    overwrite: bool = Field(False, description="replace an existing output directory")


class RunConfig(FrozenConfig):
    """`ecomrl run`: the whole pipeline on the embedded defaults. The world that deploys the
    policies is the one that wrote the logs (`generate.seed`)."""

    workdir: Path = Field(Path("ecomrl-out"), description="where every stage writes")
    spec: LogSpec = LogSpec()
    generate: GenerateConfig = GenerateConfig()
    ingest: IngestConfig = IngestConfig()
    simulator: SimulatorConfig = SimulatorConfig(baselines=False)
    train: TrainConfig = TrainConfig()
    supervised: SupervisedConfig = SupervisedConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

    @field_validator("simulator", mode="before")
    @classmethod
    def _no_density_baselines(cls, value):
        """Table 1's density baselines belong to `ecomrl simulator evaluate`, not to the run:
        off unless a config file turns them on."""
        return {"baselines": False, **value} if isinstance(value, dict) else value


class Profile(enum.StrEnum):
    DEFAULT = "default"
    QUICK = "quick"


# `ecomrl run --profile quick`: every stage on a budget, a smoke test of the whole pipeline
# (its numbers mean little). Applied under the YAML file and the command-line options.
PROFILES: dict[Profile, dict] = {
    Profile.DEFAULT: {},
    Profile.QUICK: {
        "generate": {"sessions": 3000},
        "ingest": {"shards": 2},
        "simulator": {
            "density": {"gan_sd": {"steps": 300}},
            "behaviour": {"epochs": 2, "min_steps": 100},
            "mail": {"iterations": 2, "env_steps_per_iteration": 2048},
        },
        "train": {"env_steps": 16384},
        "supervised": {"epochs": 2},
        "evaluation": {"customers": 2000},
    },
}


def default(model: type[BaseModel], field: str):
    """The default of `model.field`, for CLI options that must not restate it."""
    return model.model_fields[field].default


def help_of(model: type[BaseModel], field: str) -> str:
    return model.model_fields[field].description or ""


def merge_settings(base: dict, update: dict) -> dict:
    """`base` updated from `update`, recursively; None in `update` means "not given"."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict):
            merged[key] = merge_settings(merged.get(key) or {}, value)
        elif value is not None:
            merged[key] = value
    return merged


def load_run_config(
    path: Path | None, overrides: dict | None = None, profile: Profile = Profile.DEFAULT
) -> RunConfig:
    """The run config of `profile`, updated from a YAML file, then from `overrides`."""
    return load_config(RunConfig, path, overrides, base=PROFILES[profile])


def load_config(
    model: type[M], path: Path | None, overrides: dict | None = None, base: dict | None = None
) -> M:
    """`model`'s embedded defaults updated from `base`, then from a YAML file, then from
    `overrides` (nested dicts like {"generate": {"sessions": 500}}; None leaves a setting)."""
    data: dict = {}
    if path is not None:
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping at the top level")
    data = merge_settings(merge_settings(base or {}, data), overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path or 'config'}: {where}: {first['msg']}") from exc
