"""MAIL: Multi-agent Adversarial Imitation Learning (paper, "MAIL", Algorithm 2), on RLlib.

The joint policy pi^c_{kappa,sigma} = pi_sigma(a | s) * pi^c_kappa(a^c | <s, a, n>) is one RLlib
module (`JointPolicyModule`) sampled in `MailVectorEnv` (customers from GAN-SD, transitions
T^c). Each iteration of `MAIL.training_step` is one outer step of Algorithm 2:

    lines 4-9   sample trajectories tau_j with the joint policy on RLlib env runners;
    lines 10-11 update the discriminator R^c_theta to minimise
                    E_{tau_g}[log R(s^c, a^c)] + E_{tau_e}[log(1 - R(s^c, a^c))]
                written here with R the probability that a pair is *generated*;
    line 12     set every generated step's reward from R^c_theta and update kappa and sigma
                with the RL learner (PPO's learner: the RL step is any RLlib policy-gradient
                learner, selected by `MailConfig.learner`).

Choices where the paper is silent, and why:
- reward r = log(1 - R) - log R, the discriminator's logit for "logged" (AIRL's form, Fu et al.
  2018), centred over each sampled batch. GAIL's -log R is always positive and rewards long
  sessions for their length alone, which would bias exactly what we imitate (when customers
  buy or leave); an uncentred logit, negative on average once the discriminator wins, charges
  every page view and shortens sessions (measured: 2.5 pages a session against 3.4 logged);
- kappa and sigma start from behaviour cloning (`behaviour_cloning.py`), as GAIL practice does,
  so the adversarial steps refine a reasonable policy instead of starting from noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID, Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchDiagGaussian,
    TorchMultiDistribution,
)
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
)
from torch import nn
from tqdm.auto import tqdm

from pipeline import tracking
from pipeline.learners.adversarial import (
    discriminator_step,
    relabelled_training_step,
    set_episode_rewards,
)
from pipeline.logs.schema import LogSpec
from pipeline.simulator.config import MailConfig, MailCustomers, PolicyLearner, SimulatorConfig
from pipeline.simulator.customers import CustomerCodec
from pipeline.simulator.data import BUY, TrainingData, open_training_data
from pipeline.simulator.mail_env import MailVectorEnv
from pipeline.simulator.networks import (
    CustomerPolicyNet,
    EnginePolicyNet,
    Standardize,
    mlp,
)


class JointPolicyModule(TorchRLModule, ValueFunctionAPI):
    """pi^c_{kappa,sigma}: a ~ pi_sigma(s), then (clicks, decision) ~ pi^c(<s, a, n>).

    The action is autoregressive. The distribution inputs are [mean, log_std | clicks logits |
    decision logits], the customer parts computed given the engine action and clicks actually
    taken, so RLlib's multi-distribution gives the joint log-likelihood, entropy and KL."""

    def setup(self):
        obs_dim = self.observation_space.shape[0]
        action_dim = self.action_space[0].shape[0]
        page_size = self.action_space[1].n - 1
        hidden = tuple(self.model_config["hidden"])
        self.engine = EnginePolicyNet(obs_dim, action_dim, hidden)
        self.customer = CustomerPolicyNet(obs_dim, action_dim, page_size, hidden)
        self.value_inputs = Standardize(obs_dim)
        self.value = mlp([obs_dim, *hidden, 1], nn.Tanh)
        self._input_lens = (2 * action_dim, page_size + 1, 3)

    def warm_start(self, customer: dict, engine: dict) -> None:
        self.customer.load_state_dict(customer)
        self.engine.load_state_dict(engine)
        self.value_inputs.load_state_dict(self.engine.inputs.state_dict())

    def _forward(self, batch, **kwargs):
        """Exploration and inference: sample the joint action step by step."""
        obs = batch[Columns.OBS]
        mean, log_std = self.engine(obs)
        action = mean + log_std.exp() * torch.randn_like(mean)
        h = self.customer.hidden(obs, action)
        clicks_logits = self.customer.clicks_logits(h)
        clicks = torch.distributions.Categorical(logits=clicks_logits).sample()
        decision_logits = self.customer.decision_logits(h, clicks)
        decision = torch.distributions.Categorical(logits=decision_logits).sample()
        inputs = torch.cat([mean, log_std, clicks_logits, decision_logits], dim=-1)
        actions = (action, clicks, decision)
        logp = self.get_exploration_action_dist_cls().from_logits(inputs).logp(actions)
        return {
            Columns.ACTIONS: actions,
            Columns.ACTION_LOGP: logp,
            Columns.ACTION_DIST_INPUTS: inputs,
        }

    def _forward_train(self, batch, **kwargs):
        """The distribution inputs of the actions taken, customer parts given a and clicks."""
        obs = batch[Columns.OBS]
        action, clicks, _ = batch[Columns.ACTIONS]
        mean, log_std = self.engine(obs)
        h = self.customer.hidden(obs, action)
        decision_logits = self.customer.decision_logits(h, clicks)
        inputs = [mean, log_std, self.customer.clicks_logits(h), decision_logits]
        return {Columns.ACTION_DIST_INPUTS: torch.cat(inputs, dim=-1)}

    def compute_values(self, batch, embeddings=None):
        return self.value(self.value_inputs(batch[Columns.OBS])).squeeze(-1)

    def _dist_cls(self):
        return TorchMultiDistribution.get_partial_dist_cls(
            child_distribution_cls_struct=(TorchDiagGaussian, TorchCategorical, TorchCategorical),
            input_lens=self._input_lens,
        )

    def get_exploration_action_dist_cls(self):
        return self._dist_cls()

    def get_inference_action_dist_cls(self):
        return self._dist_cls()

    def get_train_action_dist_cls(self):
        return self._dist_cls()


class Discriminator(nn.Module):
    """R^c_theta(s^c, a^c) as a logit: > 0 means "generated", < 0 means "logged"."""

    def __init__(self, obs_dim: int, action_dim: int, page_size: int, hidden: tuple[int, ...]):
        super().__init__()
        self.page_size = page_size
        self.inputs = Standardize(obs_dim + action_dim)
        self.net = mlp([obs_dim + action_dim + page_size + 1 + 3, *hidden, 1], nn.Tanh)

    def forward(self, pairs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.inputs(torch.cat([pairs["obs"], pairs["action"]], dim=-1))
        clicks = nn.functional.one_hot(pairs["clicks"], self.page_size + 1).float()
        decision = nn.functional.one_hot(pairs["decision"], 3).float()
        return self.net(torch.cat([x, clicks, decision], dim=-1)).squeeze(-1)


@torch.no_grad()
def imitation_reward(discriminator: Discriminator, pairs: dict[str, torch.Tensor]) -> np.ndarray:
    """Line 12's reward r = log(1 - R) - log R = -logit(R). At the discriminator's optimum
    R = p_g / (p_g + p_e), so r = log(p_e(s^c, a^c) / p_g(s^c, a^c))."""
    return (-discriminator(pairs)).numpy().astype(np.float32)


def _episode_pairs(episodes) -> dict[str, torch.Tensor]:
    """The generated (s^c, a^c) of every step of every episode, concatenated."""
    obs, actions, clicks, decisions = [], [], [], []
    for episode in episodes:
        obs.append(np.asarray(episode.get_observations(slice(0, len(episode)))))
        action, click, decision = episode.get_actions()
        actions.append(np.asarray(action))
        clicks.append(np.asarray(click))
        decisions.append(np.asarray(decision))
    return {
        "obs": torch.as_tensor(np.concatenate(obs), dtype=torch.float32),
        "action": torch.as_tensor(np.concatenate(actions), dtype=torch.float32),
        "clicks": torch.as_tensor(np.concatenate(clicks), dtype=torch.int64),
        "decision": torch.as_tensor(np.concatenate(decisions), dtype=torch.int64),
    }


class MAILConfig(PPOConfig):
    """PPO's config (the RL step's learner) plus MAIL's expert data and discriminator."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or MAIL)
        defaults = MailConfig()  # the one source of MAIL's defaults
        self.expert_root: str | None = None
        self.expert_scenario: str = SimulatorConfig().scenario
        self.expert_time_slice: int | None = None
        self.discriminator_hidden: tuple[int, ...] = defaults.discriminator_hidden
        self.discriminator_steps: int = defaults.discriminator_steps
        self.discriminator_lr: float = defaults.discriminator_lr
        self.discriminator_batch_size: int = defaults.discriminator_batch_size

    def mail(
        self,
        *,
        expert_root=NotProvided,
        expert_scenario=NotProvided,
        expert_time_slice=NotProvided,
        discriminator_hidden=NotProvided,
        discriminator_steps=NotProvided,
        discriminator_lr=NotProvided,
        discriminator_batch_size=NotProvided,
    ) -> MAILConfig:
        for key, value in locals().items():
            if key != "self" and value is not NotProvided:
                setattr(self, key, value)
        return self


class MAIL(PPO):
    """Algorithm 2 as an RLlib Algorithm; see the module docstring for the line mapping."""

    @classmethod
    def get_default_config(cls) -> MAILConfig:
        return MAILConfig()

    def setup(self, config) -> None:
        super().setup(config)
        data = open_training_data(self.config.expert_root)
        transitions = data.transitions(self.config.expert_scenario, self.config.expert_time_slice)
        spec = data.spec
        self._expert = {
            "obs": torch.as_tensor(transitions.observation(spec)),
            "action": torch.as_tensor(transitions.engine_action),
            "clicks": torch.as_tensor(transitions.clicks),
            "decision": torch.as_tensor(transitions.decision),
        }
        self.discriminator = Discriminator(
            self._expert["obs"].shape[1],
            spec.action_dim,
            spec.page_size,
            tuple(self.config.discriminator_hidden),
        )
        self.discriminator.inputs.fit(
            torch.cat([self._expert["obs"], self._expert["action"]], -1).numpy()
        )
        self._d_optimiser = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.config.discriminator_lr
        )
        self._rng = torch.Generator().manual_seed(self.config.seed or 0)

    def _minibatch(self, pairs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n = len(pairs["obs"])
        index = torch.randint(n, (self.config.discriminator_batch_size,), generator=self._rng)
        return {k: v[index] for k, v in pairs.items()}

    def _update_discriminator(self, generated: dict[str, torch.Tensor]) -> dict[str, float]:
        for _ in range(self.config.discriminator_steps):
            fake, real = self._minibatch(generated), self._minibatch(self._expert)
            stats = discriminator_step(self.discriminator, self._d_optimiser, fake, real)
        return stats

    def _relabel(self, episodes) -> dict[str, float]:
        """Lines 10-12: update R^c_theta on this batch, then reward every generated step by it."""
        generated = _episode_pairs(episodes)
        stats = self._update_discriminator(generated)
        reward = imitation_reward(self.discriminator, generated)
        stats["reward_mean"] = float(reward.mean())
        # Centred per batch: a reward whose mean is not 0 pays (or charges) every extra page
        # view, so the policy would lengthen (shorten) sessions for that constant alone.
        set_episode_rewards(episodes, reward - stats["reward_mean"])
        stats["generated_buy_rate"] = float((generated["decision"] == BUY).float().mean())
        stats["generated_clicks_mean"] = float(generated["clicks"].float().mean())
        return stats

    def training_step(self) -> None:
        relabelled_training_step(self, self._relabel, "mail")


@dataclass(frozen=True)
class MailResult:
    customer: CustomerPolicyNet
    engine: EnginePolicyNet
    metrics: dict[str, float]


def learner_class(learner: PolicyLearner) -> type:
    """The RLlib learner of Algorithm 2's RL step (the TRPO learner registers here)."""
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    return {PolicyLearner.PPO: PPOTorchLearner}[learner]


def mail_config(
    data: TrainingData,
    generator_path: str,
    codec: CustomerCodec,
    hidden: tuple[int, ...],
    config: MailConfig,
    scenario: str,
    time_slice: int | None,
    seed: int,
) -> MAILConfig:
    """The RLlib config of one MAIL run, from our typed `MailConfig`."""
    spec: LogSpec = data.spec
    env_config = {
        "spec": spec.model_dump(mode="json"),
        "codec": codec.to_json(),
        "generator": generator_path,
        "seed": seed,
    }
    if config.customers is MailCustomers.LOGGED:
        env_config["logged_customers"] = {
            "root": str(data.root),
            "scenario": scenario,
            "time_slice": time_slice,
        }
    return (
        MAILConfig()
        .environment(MailVectorEnv, env_config=env_config, normalize_actions=False)
        .env_runners(
            num_env_runners=config.num_env_runners,
            num_envs_per_env_runner=config.num_envs_per_env_runner,
            gym_env_vectorize_mode="vector_entry_point",
        )
        .learners(
            num_learners=0,
            num_gpus_per_learner=config.num_gpus_per_learner,
            learner_class=learner_class(config.learner),
        )
        .training(
            train_batch_size_per_learner=config.env_steps_per_iteration,
            minibatch_size=config.minibatch_size,
            num_epochs=config.num_epochs,
            lr=config.lr,
            entropy_coeff=0.0,
            vf_clip_param=100.0,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=JointPolicyModule, model_config={"hidden": list(hidden)}
            )
        )
        .mail(
            expert_root=str(data.root),
            expert_scenario=scenario,
            expert_time_slice=time_slice,
            discriminator_hidden=config.discriminator_hidden,
            discriminator_steps=config.discriminator_steps,
            discriminator_lr=config.discriminator_lr,
            discriminator_batch_size=config.discriminator_batch_size,
        )
        .debugging(seed=seed)
    )


def _module_state(algo: MAIL, part: str) -> dict[str, torch.Tensor]:
    def get(learner):
        module = learner.module[DEFAULT_MODULE_ID]
        return {k: v.detach().cpu() for k, v in getattr(module, part).state_dict().items()}

    return next(iter(algo.learner_group.foreach_learner(get))).get()


def train_mail(
    algo_config: MAILConfig,
    start: tuple[CustomerPolicyNet, EnginePolicyNet],
    iterations: int,
    progress: bool = True,
) -> MailResult:
    """Run Algorithm 2 for `iterations` from the cloned policies `start`."""
    customer, engine = start
    algo = algo_config.build_algo()
    try:
        customer_state, engine_state = customer.state_dict(), engine.state_dict()
        algo.learner_group.foreach_learner(
            lambda learner: learner.module[DEFAULT_MODULE_ID].warm_start(
                customer_state, engine_state
            )
        )
        algo.env_runner_group.sync_weights(
            from_worker_or_learner_group=algo.learner_group, inference_only=True
        )
        metrics: dict[str, float] = {}
        for step in tqdm(range(iterations), desc="MAIL", disable=not progress, leave=False):
            result = algo.train()
            metrics = _iteration_metrics(result)
            tracking.log_metrics({f"mail.{k}": v for k, v in metrics.items()}, step=step)
        customer.load_state_dict(_module_state(algo, "customer"))
        engine.load_state_dict(_module_state(algo, "engine"))
    finally:
        algo.stop()
    return MailResult(customer, engine, metrics)


def _iteration_metrics(result: dict) -> dict[str, float]:
    runners = result.get(ENV_RUNNER_RESULTS, {})
    out = {k: float(v) for k, v in result.get("mail", {}).items()}
    if "episode_len_mean" in runners:
        out["pages_per_session"] = float(runners["episode_len_mean"])
    return out
