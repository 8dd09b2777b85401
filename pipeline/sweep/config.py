"""`ecomrl sweep CONFIG`: the typed sweep file (tune_configs/*.yaml), validated on load.

A sweep trains one kind of model many times over a search space:
- `search`: a ranking policy in a Virtual-Taobao simulator; `base` and the space's keys are
  `TrainConfig` fields (`ecomrl train`), dotted for nested ones (`anc.rho`, `settings.lr`);
- `rerank`: a re-ranking generator on the evaluators of an `ecomrl rerank train` study; `base`
  and the keys are fields of that study's run config (`gmv_weight`, `learner`, `lr`).

Every value a space can take is validated against that model on load, so an unknown key, a
value out of its field's range or a learner that does not exist fails before Ray starts.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from pipeline.config import FrozenConfig
from pipeline.errors import UserError, describe

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class Kind(enum.StrEnum):
    SEARCH = "search"
    RERANK = "rerank"


class Search(enum.StrEnum):
    GRID = "grid"  # Tune's variant generator: every grid point (x num_samples), random draws
    RANDOM = "random"  # the same generator; spaces without a grid
    OPTUNA = "optuna"  # Optuna's TPE sampler through Tune's OptunaSearch


class Scale(enum.StrEnum):
    """What a parameter's values are multiples of, resolved from the simulator's manifest."""

    LOGGED_ACTION_NORM = "logged_action_norm"  # p90 of the logged action norms (ANC's mu)


KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


class Param(FrozenConfig):
    """One dimension of the space: exactly one of grid, choice, uniform, loguniform, randint."""

    grid: list[Any] | None = Field(None, min_length=1, description="every value, in turn")
    choice: list[Any] | None = Field(None, min_length=1, description="one value at random")
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = Field(None, description="[low, high): integers")
    scale: Scale | None = Field(None, description="values are multiples of this")

    @model_validator(mode="after")
    def _one_kind(self) -> Param:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of grid, choice, uniform, loguniform, randint")
        low_high = self.uniform or self.loguniform or self.randint
        if low_high is not None and not low_high[0] < low_high[1]:
            raise ValueError(f"empty range: low {low_high[0]} must be below high {low_high[1]}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs a positive low end")
        numbers = all(isinstance(v, int | float) for v in self.values())
        if self.scale is not None and not numbers:
            raise ValueError("a scaled parameter takes numbers")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    def values(self) -> list[Any]:
        """The values to check against the model: every listed one, or a range's ends."""
        if self.grid is not None or self.choice is not None:
            return list(self.grid or self.choice)
        low, high = self.uniform or self.loguniform or self.randint
        return [low, high - 1] if self.randint else [low, high]

    def scaled(self, factor: float) -> Param:
        """This parameter with its values multiplied by `factor`."""
        kind = self.kind
        if kind in ("grid", "choice"):
            new = [v * factor for v in getattr(self, kind)]
        else:
            new = tuple(v * factor for v in getattr(self, kind))
        return Param.model_validate({kind: new})

    def tune_domain(self):
        from ray import tune

        kind = self.kind
        if kind == "grid":
            return tune.grid_search(list(self.grid))
        if kind == "choice":
            return tune.choice(list(self.choice))
        return getattr(tune, kind)(*getattr(self, kind))


class Scheduler(enum.StrEnum):
    ASHA = "asha"  # stops the worse trials early at rungs of `grace_period` * rf^i env steps
    FIFO = "fifo"  # every trial runs its whole budget


class SchedulerConfig(FrozenConfig):
    kind: Scheduler = Scheduler.ASHA
    grace_period: int | None = Field(
        None, ge=1, description="env steps before a trial can be stopped; default budget / 4"
    )
    reduction_factor: float = Field(2.0, gt=1, description="ASHA keeps 1 / rf at each rung")


class SweepConfig(FrozenConfig):
    name: str = Field(description="the sweep's name: its directory and MLflow parent run")
    kind: Kind = Field(description="search: a ranking policy; rerank: a re-ranking generator")
    simulator: str | None = Field(
        None, description="search: the simulator checkpoint directory or MLflow URI"
    )
    study: Path | None = Field(
        None, description="rerank: an `ecomrl rerank train` output (its evaluators and data)"
    )
    experiment: str | None = Field(None, description="MLflow experiment; default sweep-NAME")
    metric: str | None = Field(
        None, description="what the best trial maximises; default sim_r2p (search), bp (rerank)"
    )
    mode: str = Field("max", pattern="^(max|min)$")
    base: dict[str, Any] = Field(default_factory=dict, description="every trial's settings")
    space: dict[str, Param] = Field(min_length=1, description="dotted setting -> values")
    search: Search = Search.GRID
    num_samples: int = Field(1, ge=1, description="grid: repeats of the grid; else trials")
    budget: int = Field(50_000, ge=1, description="env steps each trial samples at most")
    scheduler: SchedulerConfig = SchedulerConfig()
    max_concurrent_trials: int = Field(1, ge=1, description="trials run at the same time")
    checkpoint_every: int = Field(5, ge=1, description="iterations between trial checkpoints")
    eval_customers: int = Field(
        2000, ge=100, description="search: simulated sessions behind each sim_r2p"
    )
    register_best: bool = Field(True, description="register the best trial's model in MLflow")
    model_name: str | None = Field(None, description="registered model; default ecomrl-NAME")
    seed: int = Field(0, ge=0, description="the search algorithm's seed")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError("lower-case letters, digits, '-' and '_' only")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        if self.kind is Kind.SEARCH and self.simulator is None:
            raise ValueError("a search sweep needs `simulator`")
        if self.kind is Kind.RERANK and self.study is None:
            raise ValueError("a rerank sweep needs `study`")
        if self.kind is Kind.RERANK and any(p.scale for p in self.space.values()):
            raise ValueError("scaled parameters belong to search sweeps")
        if self.grace_period > self.budget:
            raise ValueError(f"scheduler.grace_period {self.grace_period} exceeds the budget")
        grids = [k for k, p in self.space.items() if p.grid is not None]
        if self.search is Search.OPTUNA and grids:
            raise ValueError(f"optuna samples, it does not enumerate grids: {', '.join(grids)}")
        if self.search is Search.RANDOM and grids:
            raise ValueError(f"random search has no grids ({', '.join(grids)}): use search: grid")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or f"sweep-{self.name}"

    @property
    def objective(self) -> str:
        return self.metric or ("sim_r2p" if self.kind is Kind.SEARCH else "bp")

    @property
    def registered_model(self) -> str:
        return self.model_name or f"ecomrl-{self.name}"

    @property
    def grace_period(self) -> int:
        return self.scheduler.grace_period or max(1, self.budget // 4)


def with_params(base: dict, params: dict[str, Any]) -> dict:
    """A copy of `base` with each dotted setting of `params` set (`anc.rho`: base["anc"]["rho"];
    a value, even a dict such as a Tune domain, replaces what is there)."""
    import copy

    result = copy.deepcopy(base)
    for dotted, value in params.items():
        *parents, leaf = dotted.split(".")
        section = result
        for key in parents:
            if not isinstance(section.get(key), dict):
                section[key] = {}
            section = section[key]
        section[leaf] = value
    return result


def trial_configs(config: SweepConfig, model, base: dict, where: str) -> list:
    """`base` and base with each value of each parameter, validated against `model`: an
    unknown key or a value out of range names the parameter (`space.anc.rho: ...`)."""
    from pydantic import ValidationError

    try:
        checked = [model.model_validate(base)]
    except ValidationError as exc:
        raise UserError(f"{where}: base: {describe(exc)}") from exc
    for dotted, param in config.space.items():
        for value in param.values():
            try:
                checked.append(model.model_validate(with_params(base, {dotted: value})))
            except ValidationError as exc:
                raise UserError(f"{where}: space.{dotted}: {describe(exc)}") from exc
    return checked


def load_sweep(path: Path, overrides: dict | None = None) -> SweepConfig:
    """The sweep file at `path` (or a bundled one by name: `anc` is tune_configs/anc.yaml),
    updated from `overrides`, validated."""
    from pipeline.config import load_config

    return load_config(SweepConfig, resolve_file(path), overrides)


def resolve_file(path: Path) -> Path:
    if path.suffix or path.exists():
        return path
    from importlib.resources import files

    bundled = Path(str(files("tune_configs") / f"{path}.yaml"))
    if not bundled.is_file():
        names = sorted(p.stem for p in bundled.parent.glob("*.yaml"))
        raise UserError(f"{path}: no such sweep file, nor a bundled sweep ({', '.join(names)})")
    return bundled
