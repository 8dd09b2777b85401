"""Train a ranking policy in Virtual-Taobao with any registered learner, optionally under ANC,
then save the RLlib checkpoint and export the policy (pipeline/export) for deployment."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from tqdm.auto import tqdm

from pipeline import tracking
from pipeline.errors import UserError
from pipeline.learners.anc import LOGGED_NORM_METRIC, anc_environment
from pipeline.learners.config import TrainConfig
from pipeline.learners.registry import Algo, algorithm_config
from pipeline.simulator.checkpoint import Manifest, load_simulator
from rllib_envs import ENV_ID

CHECKPOINT_DIR = "checkpoint"
LOGGED_MEDIAN_NORM_METRIC = "logged_action_norm.p50"
POLICY_DIR = "policy"


@dataclass(frozen=True)
class TrainResult:
    policy: Path  # the exported policy directory (policy.pt, policy.json, policy.onnx)
    checkpoint: Path  # the RLlib checkpoint
    metrics: dict[str, float]


@dataclass(frozen=True)
class ManifestDefaults:
    """The settings that default to the logged actions' scale, resolved from one manifest read
    (a `runs:/` simulator is downloaded for it)."""

    mu: float | None  # ANC's mu; None trains without ANC
    initial_action_std: float | None  # the Gaussian's starting std; None for DDPG


def manifest_defaults(
    simulator: str, config: TrainConfig, manifest: Manifest | None = None
) -> ManifestDefaults:
    """mu of eq. 3: as configured, else the logged action norms' p90. The starting std of a
    Gaussian policy (PPO, TRPO): as configured, else the logged actions' per-dimension scale,
    their median norm / sqrt(action_dim). RLlib starts at std 1 per dimension, an action norm
    of ~sqrt(action_dim) = 5 here, ten times the logged norms: the first iterations would then
    explore (and, under ANC, be penalised) almost only where the simulator has seen no data.
    `manifest`: the simulator's, when already read (a `runs:/` simulator is downloaded to read
    it)."""
    mu = None if config.anc is None else config.anc.mu
    std = None if config.algo is Algo.DDPG else config.initial_action_std
    need_mu = config.anc is not None and mu is None
    need_std = config.algo is not Algo.DDPG and std is None
    if need_mu or need_std:
        manifest = manifest or load_simulator(simulator).manifest
        if need_mu:
            mu = _logged(simulator, manifest.metrics, LOGGED_NORM_METRIC, "anc.mu")
        if need_std:
            median = _logged(simulator, manifest.metrics, LOGGED_MEDIAN_NORM_METRIC,
                             "initial_action_std")  # fmt: skip
            std = median / math.sqrt(manifest.action_dim)
    return ManifestDefaults(mu, std)


def _logged(simulator: str, metrics: dict[str, float], name: str, setting: str) -> float:
    if name not in metrics:
        raise UserError(f"{simulator}: the manifest has no {name}; set {setting}")
    return metrics[name]


def _model_config(algo: Algo, hidden: tuple[int, ...]) -> dict:
    if algo is Algo.DDPG:
        return {"actor_hidden": list(hidden), "critic_hidden": list(hidden)}
    return {"fcnet_hiddens": list(hidden), "fcnet_activation": "tanh"}


def _start_std(algo, std: float) -> None:
    """Start every learner's Gaussian at `std`: the policy head's output layer emits
    [mean | log_std], so its log-std rows get weight 0 and bias log(std). Then sync.

    With `num_learners` >= 2 each learner's module is wrapped in RLlib's `TorchDDPRLModule`
    (torch DDP), which has no `pi`: the edit goes to `unwrapped()`, the same parameters DDP
    holds. Every learner writes the same values, so the learners stay identical (DDP only
    broadcasts the weights once, when it wraps the module)."""
    log_std = math.log(std)

    def set_log_std(learner) -> None:
        head = learner.module[DEFAULT_MODULE_ID].unwrapped().pi
        output = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
        half = output.out_features // 2
        with torch.no_grad():
            output.weight[half:].zero_()
            output.bias[half:].fill_(log_std)

    # A remote learner's error comes back as a result (and takes that learner out of
    # service): raise it here rather than train on.
    for result in algo.learner_group.foreach_learner(set_log_std):
        if not result.ok:
            raise result.get()
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )


def training_config(config: TrainConfig):
    """The learner's RLlib config with `config.settings` applied: an unknown setting is an
    error here, before a simulator is read or anything built."""
    algo_config = algorithm_config(config.algo)
    try:
        return algo_config.training(**config.settings)
    except TypeError as exc:
        raise UserError(f"settings for {config.algo}: {exc}") from exc


def rllib_config(algo_config, simulator: str, config: TrainConfig, mu: float | None):
    """`algo_config` (from `training_config`) set up for one training run in `simulator`,
    under ANC with `mu` unless `config.anc` is None."""
    env_config = {
        "simulator": str(simulator),
        "behaviour": config.behaviour.value,
        "reward": config.reward.value,
        "seed": config.seed,
    }
    env = ENV_ID
    if config.anc is not None:
        env, env_config = anc_environment(ENV_ID, env_config, config.anc.rho, mu)
    return (
        # The env clips actions to its Box in one vectorised op (rllib_envs/virtual_taobao.py).
        algo_config.environment(
            env, env_config=env_config, normalize_actions=False, clip_actions=False
        )
        .env_runners(
            num_env_runners=config.num_env_runners,
            num_envs_per_env_runner=config.num_envs_per_env_runner,
            gym_env_vectorize_mode="vector_entry_point",
        )
        .learners(
            num_learners=config.num_learners, num_gpus_per_learner=config.num_gpus_per_learner
        )
        .rl_module(model_config=_model_config(config.algo, config.hidden))
        .debugging(seed=config.seed)
    )


def iteration_metrics(result: dict) -> dict[str, float]:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_RETURN_MEAN, LEARNER_RESULTS

    runners = result.get(ENV_RUNNER_RESULTS, {})
    out = {}
    if EPISODE_RETURN_MEAN in runners:
        out["episode_return_mean"] = float(runners[EPISODE_RETURN_MEAN])
        out["episode_len_mean"] = float(runners.get("episode_len_mean", float("nan")))
    for name, value in result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {}).items():
        if isinstance(value, int | float):
            out[f"learner.{name}"] = float(value)
    return out


def sampled_env_steps(result: dict) -> int:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    return int(result.get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))


def build_algorithm(simulator: str, config: TrainConfig):
    """The RLlib Algorithm of `config` in `simulator`, its Gaussian started at the logged
    actions' scale; returns it with the manifest defaults it resolved (mu, the starting std)."""
    algo_config = training_config(config)
    defaults = manifest_defaults(simulator, config)
    algo = rllib_config(algo_config, simulator, config, defaults.mu).build_algo()
    if defaults.initial_action_std is not None:  # DDPG explores by exploration_sigma
        _start_std(algo, defaults.initial_action_std)
    return algo, defaults


def export_module(
    module, out: Path, simulator: str, config: TrainConfig, defaults: ManifestDefaults, steps: int
) -> Path:
    """Export a trained RLModule's policy to `out` (pipeline/export); returns the directory."""
    from pipeline.export import export_policy, policy_net

    space = module.action_space
    mu = defaults.mu
    metadata = {
        "algo": config.algo.value,
        "simulator": str(simulator),
        "behaviour": config.behaviour.value,
        "anc": None if mu is None else {"rho": config.anc.rho, "mu": mu},
        "initial_action_std": defaults.initial_action_std,
        "env_steps": steps,
    }
    net = policy_net(module, space)
    obs_dim = module.observation_space.shape[0]
    return Path(export_policy(net, out, obs_dim, space.shape[0], metadata).directory)


def train_policy(
    simulator: str, out: Path, config: TrainConfig, progress: bool = True
) -> TrainResult:
    """Train until `config.env_steps` env steps are sampled; checkpoint and export to `out`."""
    algo, defaults = build_algorithm(simulator, config)
    try:
        start, steps, metrics = time.perf_counter(), 0, {}
        with tqdm(total=config.env_steps, desc=f"train {config.algo}", disable=not progress) as bar:
            while steps < config.env_steps:
                result = algo.train()
                bar.update(sampled_env_steps(result) - steps)
                steps = sampled_env_steps(result)
                metrics = iteration_metrics(result)
                tracking.log_metrics(metrics, step=steps)
        elapsed = time.perf_counter() - start
        metrics.update(env_steps=steps, train_seconds=elapsed, env_steps_per_s=steps / elapsed)
        checkpoint = Path(algo.save_to_path(str((out / CHECKPOINT_DIR).resolve())))
        exported = export_module(
            algo.get_module(), out / POLICY_DIR, simulator, config, defaults, steps
        )
    finally:
        algo.stop()
    return TrainResult(exported, checkpoint, metrics)
