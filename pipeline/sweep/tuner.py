"""`ecomrl sweep`: a Ray Tune sweep of the trials in trainables.py, tracked in MLflow.

- The space (config.py) becomes Tune domains; `search: optuna` samples it with OptunaSearch,
  otherwise Tune's variant generator enumerates grids; ASHA stops the worse trials early on
  the `env_steps` clock, all trials stop at `budget` env steps.
- MLflow: one parent run per sweep; Ray's `MLflowLoggerCallback` makes each trial a run nested
  under it (the `mlflow.parentRunId` tag) and logs its params and every result from the
  driver. The parent gets the trial table, the curves plot and the best trial.
- The best trial's final checkpoint becomes an MLflow pyfunc model in its run, registered in
  the Model Registry and tagged with the simulator it was trained in (models.py).
- Tune checkpoints every trial; `--resume` restores an interrupted sweep with
  `Tuner.restore` and logs into the same parent and trial runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.result import (
    AUTO_RESULT_KEYS,
    DONE,
    SHOULD_CHECKPOINT,
    TIME_TOTAL_S,
    TRAINING_ITERATION,
)

from pipeline import tracking
from pipeline.errors import UserError
from pipeline.sweep.config import Kind, Scale, Search, SweepConfig, trial_configs, with_params

SWEEP_FILE = "ecomrl_sweep.json"  # beside Tune's state: the config and the MLflow parent run


class SweepInterrupted(UserError):
    """The sweep stopped before every trial finished: `--resume` continues it."""


@dataclass(frozen=True)
class Prepared:
    """A sweep resolved on the driver: what Tune runs, and what the model is tagged with."""

    trainable: Any
    param_space: dict
    tags: dict[str, str]


_TUNE_KEYS = {*AUTO_RESULT_KEYS, DONE, SHOULD_CHECKPOINT} - {TIME_TOTAL_S, TRAINING_ITERATION}


class TrialRunsCallback(MLflowLoggerCallback):
    """Ray's MLflow logger, its trial -> run map kept in Tune's experiment state by trial id:
    a resumed trial logs into the run it started, not a new one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_ids: dict[str, str] = {}

    def log_trial_start(self, trial) -> None:
        if trial.trial_id in self.run_ids:
            self._trial_runs[trial] = self.run_ids[trial.trial_id]
        super().log_trial_start(trial)
        self.run_ids[trial.trial_id] = self._trial_runs[trial]

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        # What the trial measured: not Tune's bookkeeping (pids, timestamps, the config again,
        # which is the run's params already).
        metrics = {k: v for k, v in result.items() if k not in _TUNE_KEYS}
        super().log_trial_result(iteration, trial, metrics)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if trial not in self._trial_runs:  # it failed before it started: record it all the same
            self.log_trial_start(trial)
        super().log_trial_end(trial, failed)

    def get_state(self) -> dict:
        return {"run_ids": dict(self.run_ids)}

    def set_state(self, state: dict) -> None:
        self.run_ids = dict(state["run_ids"])


def prepare(config: SweepConfig) -> Prepared:
    """Validate every setting the space can take and resolve scaled values; fails (UserError)
    before Ray is started."""
    return _prepare_search(config) if config.kind is Kind.SEARCH else _prepare_rerank(config)


def _prepare_search(config: SweepConfig) -> Prepared:
    from pipeline.learners.anc import LOGGED_NORM_METRIC
    from pipeline.learners.config import TrainConfig
    from pipeline.learners.train import manifest_defaults, training_config
    from pipeline.simulator.checkpoint import load_simulator
    from pipeline.sweep.trainables import SearchTrial, search_resources

    simulator = load_simulator(config.simulator)  # read (downloaded) once
    for train in trial_configs(config, TrainConfig, config.base, "sweep"):
        training_config(train)  # RLlib knows every `settings` name of every learner
        # The manifest has what the defaults need.
        manifest_defaults(config.simulator, train, simulator.manifest)
    scales = {Scale.LOGGED_ACTION_NORM: simulator.manifest.metrics.get(LOGGED_NORM_METRIC)}
    domains = {}
    for dotted, param in config.space.items():
        if param.scale is not None:
            if scales[param.scale] is None:
                raise UserError(f"{config.simulator}: the manifest has no {LOGGED_NORM_METRIC}")
            param = param.scaled(scales[param.scale])
        domains[dotted] = param.tune_domain()
    space = {
        "train": with_params(config.base, domains),
        "simulator": str(config.simulator),
        "eval_customers": config.eval_customers,
    }
    tags = {"simulator": str(config.simulator), "simulator_version": simulator.version}
    return Prepared(tune.with_resources(SearchTrial, search_resources), space, tags)


def _prepare_rerank(config: SweepConfig) -> Prepared:
    from pipeline.config import merge_settings
    from pipeline.rerank.config import GeneratorTrainConfig
    from pipeline.rerank.train import EVALUATORS_DIR, read_study
    from pipeline.sweep.trainables import RerankTrial, rerank_resources

    study = config.study.resolve()
    _, study_config = read_study(study)
    base = merge_settings(study_config.defaults.model_dump(mode="json"), config.base)
    trial_configs(config, GeneratorTrainConfig, base, "sweep")
    domains = {dotted: param.tune_domain() for dotted, param in config.space.items()}
    space = {"run": with_params(base, domains), "study": str(study)}
    # The evaluator is the re-ranker's simulator: it pays the generator.
    evaluators = study / EVALUATORS_DIR
    tags = {"simulator": str(evaluators), "simulator_version": _directory_version(evaluators)}
    return Prepared(tune.with_resources(RerankTrial, rerank_resources), space, tags)


def _directory_version(directory: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _tuner(config: SweepConfig, prepared: Prepared, storage: Path, callback, progress: bool):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    concurrent = config.max_concurrent_trials
    if config.search is Search.OPTUNA:
        from ray.tune.search.optuna import OptunaSearch

        search = OptunaSearch(seed=config.seed)
    else:  # it limits concurrency itself: Tune ignores max_concurrent_trials for it
        search = BasicVariantGenerator(random_state=config.seed, max_concurrent=concurrent)
        concurrent = None
    if config.scheduler.kind == "asha":
        scheduler = ASHAScheduler(
            time_attr="env_steps",
            max_t=config.budget,
            grace_period=config.grace_period,
            reduction_factor=config.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        prepared.trainable,
        param_space=prepared.param_space,
        tune_config=tune.TuneConfig(
            metric=config.objective,
            mode=config.mode,
            num_samples=config.num_samples,
            max_concurrent_trials=concurrent,
            search_alg=search,
            scheduler=scheduler,
            # Tune's default names embed the whole config: too long for a path.
            trial_dirname_creator=lambda trial: trial.trial_id,
            reuse_actors=True,
        ),
        run_config=_run_config(config, storage, callback, progress),
    )


def _run_config(config: SweepConfig, storage: Path, callback, progress: bool):
    # `num_to_keep` makes Tune snapshot its state at each checkpoint and warn that it did.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return tune.RunConfig(
        name=config.name,
        storage_path=str(storage),
        stop={"env_steps": config.budget},
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=config.checkpoint_every, checkpoint_at_end=True, num_to_keep=2
        ),
        callbacks=[callback],
        verbose=1 if progress else 0,
    )


@dataclass(frozen=True)
class SweepResult:
    directory: Path
    parent_run_id: str
    trials: int
    best: dict[str, Any]  # trial id, its params, metric, MLflow run
    registered: dict[str, Any] | None  # model name, version, tags


def run_sweep(
    config: SweepConfig, storage: Path, resume: bool = False, progress: bool = True
) -> SweepResult:
    """Run (or, with `resume`, continue) the sweep under `storage/config.name`."""
    from pipeline.ray_runtime import ensure_ray

    storage = storage.resolve()
    directory = storage / config.name
    parent_id = _check_directory(config, directory, resume)
    prepared = prepare(config)
    tracking.check_server(tracking.tracking_uri())  # before Ray starts, not after
    ensure_ray()
    params = {"sweep": config.model_dump(mode="json"), "storage": str(storage)}
    with tracking.run(
        config.name, None if resume else params, config.experiment_name, parent_id
    ) as parent:
        directory.mkdir(parents=True, exist_ok=True)
        state = {"config": config.model_dump(mode="json"), "parent_run_id": parent.info.run_id}
        (directory / SWEEP_FILE).write_text(json.dumps(state, indent=2))
        if resume:
            tuner = tune.Tuner.restore(
                str(directory), trainable=prepared.trainable, resume_errored=True
            )
        else:
            callback = TrialRunsCallback(
                tracking_uri=tracking.tracking_uri(),
                experiment_name=config.experiment_name,
                tags={"mlflow.parentRunId": parent.info.run_id, **prepared.tags},
            )
            tuner = _tuner(config, prepared, storage, callback, progress)
        results = tuner.fit()
        _check_results(config, results, directory)
        best = results.get_best_result(config.objective, config.mode, scope="last")
        best_run = _trial_run(parent, best.metrics["trial_id"])
        _log_summary(config, results, best, best_run, directory)
        registered = _register(config, prepared, best, best_run) if config.register_best else None
    summary = {
        "trial_id": best.metrics["trial_id"],
        config.objective: best.metrics[config.objective],
        "env_steps": best.metrics["env_steps"],
        "mlflow_run_id": best_run,
        "params": _swept(config, best.config),
    }
    return SweepResult(directory, parent.info.run_id, len(results), summary, registered)


def _check_directory(config: SweepConfig, directory: Path, resume: bool) -> str | None:
    """The parent run to continue (resume) or None; a new sweep never overwrites an old one."""
    state_file = directory / SWEEP_FILE
    if not resume:
        if directory.exists() and any(directory.iterdir()):
            raise UserError(
                f"{directory}: a sweep named {config.name!r} is there; continue it with "
                "--resume, or give the sweep another name or --storage"
            )
        return None
    if not (state_file.is_file() and tune.Tuner.can_restore(str(directory))):
        raise UserError(f"{directory}: no interrupted sweep to resume here")
    state = json.loads(state_file.read_text())
    if state["config"] != config.model_dump(mode="json"):
        raise UserError(
            f"{directory}: the sweep was started with another config; Tune resumes an "
            "experiment as it was (start a new sweep to change it)"
        )
    return state["parent_run_id"]


def _check_results(config: SweepConfig, results, directory: Path) -> None:
    errors = [r for r in results if r.error is not None]
    if errors:
        first = str(errors[0].error).strip().splitlines()[-1]
        raise UserError(
            f"{len(errors)} of {len(results)} trials failed (first: {first}); their logs are "
            f"under {directory}"
        )
    # After Ctrl-C Tune marks the trials it stops TERMINATED, but the experiment state it
    # saved just before says which ones were still running.
    from ray.tune.experiment import Trial

    saved = tune.ExperimentAnalysis(str(directory)).trials
    finished = sum(trial.status == Trial.TERMINATED for trial in saved)
    if finished < len(saved):
        raise SweepInterrupted(
            f"the sweep stopped with {finished} of {len(saved)} trials finished; continue it "
            "with: ecomrl sweep CONFIG --resume"
        )


def _trial_run(parent, trial_id: str) -> str:
    """The MLflow run Ray's callback made for `trial_id` under `parent`."""
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=10_000,
    )
    matching = [r for r in runs if r.data.tags.get("trial_name", "").endswith(trial_id)]
    if len(matching) != 1:
        raise RuntimeError(f"{len(matching)} MLflow runs for trial {trial_id}, expected one")
    return matching[0].info.run_id


def _swept(config: SweepConfig, trial_config: dict) -> dict[str, Any]:
    """The trial's values of the swept settings."""
    section = trial_config["train" if config.kind is Kind.SEARCH else "run"]
    values = {}
    for dotted in config.space:
        value = section
        for key in dotted.split("."):
            value = value[key]
        values[dotted] = value
    return values


def _log_summary(config: SweepConfig, results, best, best_run: str, directory: Path) -> None:
    """On the parent run: the best trial, every trial's final numbers, the curves."""
    frame = results.get_dataframe()
    frame.to_csv(directory / "trials.csv", index=False)
    tracking.log_artifact(directory / "trials.csv")
    tracking.log_metrics(
        {f"best.{config.objective}": best.metrics[config.objective], "trials": len(results)}
    )
    trial = {"trial_id": best.metrics["trial_id"], "mlflow_run_id": best_run}
    tracking.log_json({**trial, "params": _swept(config, best.config)}, "best_trial.json")
    _plot_curves(config, results, directory / "curves.png")
    tracking.log_artifact(directory / "curves.png")


def _plot_curves(config: SweepConfig, results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for result in results:
        curve = result.metrics_dataframe
        if curve is None or curve.empty:
            continue
        label = ", ".join(f"{k}={_short(v)}" for k, v in _swept(config, result.config).items())
        axis.plot(curve["env_steps"], curve[config.objective], marker="o", label=label)
    axis.set_xlabel("env steps")
    axis.set_ylabel(config.objective)
    axis.set_title(f"sweep {config.name}: {config.objective} per trial")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _register(config: SweepConfig, prepared: Prepared, best, run_id: str) -> dict[str, Any]:
    """The best trial's final checkpoint as a registered pyfunc model (models.py)."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.rl_module import RLModule

    from pipeline.rerank.generator import generator_net
    from pipeline.sweep import models

    checkpoint = Path(best.checkpoint.path)
    module = RLModule.from_checkpoint(
        checkpoint / "learner_group" / "learner" / "rl_module" / DEFAULT_MODULE_ID
    )
    tags = {
        **prepared.tags,
        "sweep": config.name,
        "trial_id": best.metrics["trial_id"],
        config.objective: str(best.metrics[config.objective]),
    }
    with tempfile.TemporaryDirectory() as scratch:
        if config.kind is Kind.SEARCH:
            artifacts = {"policy": _export_policy(best, module, Path(scratch))}
            code, model_config = models.SEARCH_POLICY, None
            dims = module.observation_space.shape[0], module.action_space.shape[0]
            signature = models.policy_signature(*dims)
        else:
            net = generator_net(module)
            artifacts = {"generator": _save_generator(net, Path(scratch))}
            code, model_config = models.RERANK_GENERATOR, {"k": _study_k(config)}
            dims = net.policy.user.in_features, net.policy.item.in_features
            signature = models.generator_signature(*dims, model_config["k"])
        version = models.log_and_register(
            run_id, code, artifacts, config.registered_model, tags, signature, model_config
        )
    return {"name": version.name, "version": int(version.version), "tags": tags}


def _export_policy(best, module, scratch: Path) -> Path:
    from pipeline.learners.config import TrainConfig
    from pipeline.learners.train import export_module, manifest_defaults

    train = TrainConfig.model_validate(best.config["train"])
    simulator = best.config["simulator"]
    defaults = manifest_defaults(simulator, train)
    steps = int(best.metrics["env_steps"])
    return export_module(module, scratch / "policy", simulator, train, defaults, steps)


def _save_generator(net, scratch: Path) -> Path:
    from pipeline.weights import save_module

    path = scratch / "generator.safetensors"
    save_module(net, path)
    return path


def _study_k(config: SweepConfig) -> int:
    from pipeline.rerank.train import read_study

    return read_study(config.study)[1].k
