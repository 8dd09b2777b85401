"""`ecomrl rerank train`: evaluators from the logged lists, then generators trained on
`ReRank-v0` by each learner of the study.

Layout under OUT:
    evaluators/<kind>.safetensors|json     the four evaluators (CAUSAL pays the generator)
    evaluators.json                        their held-out AUCs and pair accuracies
    runs/<name>/generator.safetensors      the trained generator's torch core
    runs/<name>/run.json                   its config and final metrics
    runs/<name>/curves.json                per-iteration entropy, BP, (GAIL) discriminator AUC
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ray.rllib.core import DEFAULT_MODULE_ID
from tqdm.auto import tqdm

from pipeline import tracking
from pipeline.learners.ppo_mc import Baseline
from pipeline.learners.train import sampled_env_steps
from pipeline.logs.schema import LogSpec
from pipeline.rerank.config import GeneratorTrainConfig, RerankConfig, RerankLearner
from pipeline.rerank.evaluator import (
    EvaluatorKind,
    load_evaluator,
    save_evaluator,
    train_evaluator,
)
from pipeline.rerank.generator import GeneratorNet, generator_net, module_spec
from pipeline.rerank.metrics import better_percentage, generated_orders
from pipeline.rerank.requests import Requests, load_requests
from pipeline.weights import load_module, save_module
from rllib_envs import RERANK_ENV_ID

STUDY_FILE = "study.json"
EVALUATORS_DIR = "evaluators"
RUNS_DIR = "runs"
GENERATOR_FILE = "generator.safetensors"

_BASELINES = {
    RerankLearner.REINFORCE: Baseline.NONE,
    RerankLearner.REINFORCE_LOGGED: Baseline.LOGGED,
    RerankLearner.REINFORCE_LOGGED_RATE: Baseline.LOGGED_RATE,
    RerankLearner.PPO_MC: Baseline.GROUP,
    RerankLearner.GAIL: Baseline.GROUP,
}
# Learners whose baseline is the mean of several permutations of one request.
_GROUPED = (RerankLearner.PPO_MC, RerankLearner.GAIL)
_REINFORCE = (
    RerankLearner.REINFORCE,
    RerankLearner.REINFORCE_LOGGED,
    RerankLearner.REINFORCE_LOGGED_RATE,
)


@dataclass(frozen=True)
class Split:
    train: Requests
    test: Requests
    spec: LogSpec


def split_requests(ingested: str | Path, config: RerankConfig) -> Split:
    """Train / test requests, split as `ReRank-v0` splits them (same fraction and seed)."""
    requests, spec = load_requests(ingested, config.k)
    train, test = requests.split(config.test_fraction, config.split_seed)
    return Split(train, test, spec)


def train_evaluators(split: Split, out: Path, config: RerankConfig, progress: bool) -> dict:
    """Every evaluator kind on the training requests; held-out metrics per kind."""
    metrics = {}
    for kind in EvaluatorKind:
        model, metrics[kind.value] = train_evaluator(
            kind, split.train, split.test, config.evaluator, progress
        )
        save_evaluator(model, out / EVALUATORS_DIR)
        tracking.log_metrics({f"evaluator.{kind}.{k}": v for k, v in metrics[kind.value].items()})
    (out / "evaluators.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def write_study(out: Path, ingested: str | Path, config: RerankConfig) -> None:
    """What `ecomrl rerank evaluate` needs to find the data and the runs again."""
    study = {
        "ingested": str(Path(ingested).resolve()),
        "config": config.model_dump(mode="json"),
        "runs": list(config.runs),
    }
    (out / STUDY_FILE).write_text(json.dumps(study, indent=2))


def env_config(ingested: str | Path, out: Path, run: GeneratorTrainConfig, config: RerankConfig):
    return {
        "requests": str(ingested),
        "evaluator": str(out / EVALUATORS_DIR),
        "k": config.k,
        "sizes": run.train_sizes,
        "test_fraction": config.test_fraction,
        "split_seed": config.split_seed,
        "seed": run.seed,
        "reward": run.reward.value,
        "gmv_weight": run.gmv_weight,
        "group_size": run.group_size if run.learner in _GROUPED else 1,
    }


def _algorithm_config(run: GeneratorTrainConfig):
    if run.learner is RerankLearner.PPO:
        from ray.rllib.algorithms.ppo import PPOConfig

        # The seed's PPO: a critic summing per-candidate values, GAE over whole lists.
        return PPOConfig().training(gamma=1.0, lambda_=0.95)
    if run.learner is RerankLearner.GAIL:
        from pipeline.learners.ppo_mc import RerankGAILConfig

        settings = run.gail.model_dump(exclude={"exploration_epsilon"})
        return RerankGAILConfig().gail(**settings).training(baseline=Baseline.GROUP)
    from pipeline.learners.ppo_mc import PPOMCConfig

    return PPOMCConfig().training(baseline=_BASELINES[run.learner])


def rllib_config(ingested: str | Path, out: Path, run: GeneratorTrainConfig, config: RerankConfig):
    """The RLlib config of one run: one batch = one round of `num_envs` lists per runner."""
    batch = run.num_envs * config.k * max(1, run.num_env_runners)
    reinforce = run.learner in _REINFORCE
    generator = run.generator
    if run.learner is RerankLearner.GAIL:
        generator = generator.model_copy(
            update={"exploration_epsilon": run.gail.exploration_epsilon}
        )
    return (
        _algorithm_config(run)
        .environment(RERANK_ENV_ID, env_config=env_config(ingested, out, run, config))
        .env_runners(
            num_env_runners=run.num_env_runners,
            num_envs_per_env_runner=run.num_envs,
            gym_env_vectorize_mode="vector_entry_point",
            batch_mode="complete_episodes",
            rollout_fragment_length=config.k,  # per sub-env: one list each
        )
        .training(
            train_batch_size_per_learner=batch,
            # REINFORCE: one gradient step on the whole batch (ratio 1, see ppo_mc.py).
            minibatch_size=batch if reinforce else min(run.minibatch_size, batch),
            num_epochs=1 if reinforce else run.num_epochs,
            lr=run.lr,
            entropy_coeff=run.entropy_coeff,
            gamma=1.0,
        )
        .learners(num_learners=run.num_learners, num_gpus_per_learner=run.num_gpus_per_learner)
        .rl_module(rl_module_spec=module_spec(generator))
        .debugging(seed=run.seed)
    )


def generator_metrics(result: dict, algo, evaluator, probe: Requests, k: int) -> dict[str, float]:
    """One iteration's numbers: env steps, entropy, return, BP on `probe`, (GAIL) disc. AUC."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN, LEARNER_RESULTS

    learner = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
    net = generator_net(algo.get_module())
    out = {
        "env_steps": float(sampled_env_steps(result)),
        "entropy": float(learner.get("entropy", np.nan)),
        "episode_return_mean": float(result[ENV_RUNNER_RESULTS].get(EPISODE_RETURN_MEAN, np.nan)),
        "bp": better_percentage(evaluator, probe, generated_orders(net, probe, k)),
    }
    gail = result.get("gail", {})
    if "discriminator_auc" in gail:
        out["discriminator_auc"] = float(gail["discriminator_auc"])
    return out


def probe_requests(split: Split, run: GeneratorTrainConfig) -> Requests:
    """The held-out requests BP is measured on during training (of the run's sizes)."""
    probe = split.test.with_sizes(run.train_sizes)
    return probe.take(np.arange(min(run.eval_requests, len(probe))))


def read_study(out: str | Path) -> tuple[Path, RerankConfig]:
    """The data and config of the study under `out` (`write_study`)."""
    from pipeline.errors import UserError, validated

    path = Path(out) / STUDY_FILE
    if not path.is_file():
        raise UserError(f"{path}: no re-ranking study here; run `ecomrl rerank train` first")
    study = json.loads(path.read_text())
    return Path(study["ingested"]), validated(RerankConfig, study["config"], str(path))


def train_generator(
    ingested: str | Path,
    out: Path,
    name: str,
    config: RerankConfig,
    split: Split,
    progress: bool = True,
) -> dict[str, float]:
    """Train run `name` of the study; write runs/<name>/ (module docstring)."""
    run = config.run(name)
    directory = out / RUNS_DIR / name
    directory.mkdir(parents=True, exist_ok=True)
    evaluator = load_evaluator(out / EVALUATORS_DIR, EvaluatorKind.CAUSAL)
    probe = probe_requests(split, run)
    algo = rllib_config(ingested, out, run, config).build_algo()
    curves: list[dict[str, float]] = []
    started = time.perf_counter()
    try:
        with tqdm(total=run.env_steps, desc=f"rerank {name}", disable=not progress) as bar:
            while not curves or curves[-1]["env_steps"] < run.env_steps:
                point = generator_metrics(algo.train(), algo, evaluator, probe, config.k)
                bar.update(int(point["env_steps"] - (curves[-1]["env_steps"] if curves else 0)))
                curves.append(point)
                tracking.log_metrics(point, step=int(point["env_steps"]))
        save_module(generator_net(algo.get_module()), directory / GENERATOR_FILE)
    finally:
        algo.stop()
    seconds = time.perf_counter() - started
    final = {
        **curves[-1],
        "train_seconds": seconds,
        "env_steps_per_s": curves[-1]["env_steps"] / seconds,
    }
    (directory / "curves.json").write_text(json.dumps(curves, indent=2))
    (directory / "run.json").write_text(
        json.dumps({"name": name, "config": run.model_dump(mode="json"), "final": final}, indent=2)
    )
    return final


def load_generator(out: str | Path, name: str, device: str = "cpu") -> GeneratorNet:
    return load_module(Path(out) / RUNS_DIR / name / GENERATOR_FILE, device)
