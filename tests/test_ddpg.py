"""DDPG (pipeline/learners/ddpg): hand-computed TD targets, losses and target updates, the
exploration noise, and RLlib runs on Pendulum-v1 (vectorised, and learning)."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, LEARNER_RESULTS

from pipeline.learners.ddpg import DDPGConfig, DDPGTorchRLModule, ExplorationNoise
from pipeline.learners.ddpg.ddpg_learner import td_target
from pipeline.learners.ddpg.ddpg_module import Q_POLICY

PENDULUM = "Pendulum-v1"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pendulum_config(hidden: tuple[int, ...] = (16,), **training) -> DDPGConfig:
    return (
        DDPGConfig()
        .environment(PENDULUM)
        .env_runners(num_env_runners=0)
        .training(**training)
        .rl_module(model_config={"actor_hidden": list(hidden), "critic_hidden": list(hidden)})
        .debugging(seed=0)
    )


@pytest.fixture
def learner():
    """A local DDPGTorchLearner on Pendulum (obs 3, action 1 in [−2, 2]), γ = 0.9, τ = 0.1."""
    return pendulum_config(gamma=0.9, tau=0.1).build_learner(env=gym.make(PENDULUM))


def replay_batch(rewards, terminateds, n_step) -> dict[str, torch.Tensor]:
    """What RLlib's learner connectors make of replayed n-step transitions."""
    rows = len(rewards)
    return {
        Columns.OBS: torch.randn(rows, 3),
        Columns.NEXT_OBS: torch.randn(rows, 3),
        Columns.ACTIONS: torch.rand(rows, 1) * 4 - 2,
        Columns.REWARDS: torch.tensor(rewards, dtype=torch.float32),
        Columns.TERMINATEDS: torch.tensor(terminateds),
        "n_step": torch.tensor(n_step),
        "weights": torch.ones(rows),
    }


def constant_output(net: torch.nn.Sequential, value: float) -> None:
    """Make an MLP return `value` whatever its input."""
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.fill_(value)


def logged(learner, key: str) -> float:
    """A loss metric the learner logged for the default module in its last loss call."""
    return torch.as_tensor(learner.metrics.peek((DEFAULT_MODULE_ID, key))).item()


def test_td_target_bootstraps_only_from_non_terminal_states():
    # y = r + γⁿ (1 − d) Q'(s', μ'(s')) with γ = 0.9 and Q' = 10.
    y = td_target(
        rewards=torch.tensor([1.0, 2.0, 3.0]),
        q_target_next=torch.tensor([10.0, 10.0, 10.0]),
        terminateds=torch.tensor([False, True, False]),
        gamma=0.9,
        n_step=torch.tensor([1, 1, 2]),
    )
    torch.testing.assert_close(y, torch.tensor([1.0 + 9.0, 2.0, 3.0 + 8.1]))


def test_critic_loss_regresses_q_on_the_target_networks_td_target(learner):
    module = learner.module[DEFAULT_MODULE_ID]
    constant_output(module.critic, 1.0)  # Q ≡ 1
    constant_output(module.target_critic, 5.0)  # Q' ≡ 5
    batch = replay_batch(rewards=[1.0, 2.0], terminateds=[False, True], n_step=[1, 1])
    fwd_out = module.forward_train(batch)
    loss = learner.compute_loss_for_module(
        module_id=DEFAULT_MODULE_ID, config=learner.config, batch=batch, fwd_out=fwd_out
    )
    # y = [1 + 0.9 · 5, 2] = [5.5, 2];  L = ((1 − 5.5)² + (1 − 2)²) / 2;  actor loss = −Q = −1.
    critic_loss = (4.5**2 + 1.0**2) / 2
    assert logged(learner, "critic_loss") == pytest.approx(critic_loss)
    assert logged(learner, "actor_loss") == pytest.approx(-1.0)
    assert logged(learner, "td_error_mean") == pytest.approx(2.75)
    assert loss.item() == pytest.approx(critic_loss - 1.0)


def test_soft_target_update_is_polyak_averaging_with_tau(learner):
    module = learner.module[DEFAULT_MODULE_ID]
    with torch.no_grad():
        for main, target in module.get_target_network_pairs():
            for p in main.parameters():
                p.fill_(1.0)
            for p in target.parameters():
                p.fill_(0.0)
    learner.after_gradient_based_update(timesteps={})  # θ' = 0.1 · 1 + 0.9 · 0
    learner.after_gradient_based_update(timesteps={})  # θ' = 0.1 · 1 + 0.9 · 0.1
    for _, target in module.get_target_network_pairs():
        for p in target.parameters():
            torch.testing.assert_close(p, torch.full_like(p, 0.19))


def test_actor_step_moves_mu_towards_higher_q_and_leaves_the_critic_alone(learner):
    module = learner.module[DEFAULT_MODULE_ID]
    first, last = module.critic[0], module.critic[-1]
    with torch.no_grad():  # Q(s, a) = Σ_hidden relu(2 + a / 2): increasing in a
        first.weight.zero_()
        first.weight[:, -1] = 1.0
        first.bias.fill_(2.0)
        last.weight.fill_(1.0)
        last.bias.zero_()
    batch = replay_batch(rewards=[0.0] * 32, terminateds=[False] * 32, n_step=[1] * 32)
    mu_before = module.forward_inference(batch)[Columns.ACTIONS].mean()

    # The actor's term −Q(s, μ(s)) sends no gradient into the critic's weights.
    module.forward_train(batch)[Q_POLICY].mean().backward()
    assert all(p.grad is None for p in module.critic.parameters())
    assert any(p.grad.abs().sum() > 0 for p in module.actor.parameters())

    fwd_out = module.forward_train(batch)
    loss = learner.compute_loss_for_module(
        module_id=DEFAULT_MODULE_ID, config=learner.config, batch=batch, fwd_out=fwd_out
    )
    learner.apply_gradients(learner.compute_gradients({DEFAULT_MODULE_ID: loss}))
    assert module.forward_inference(batch)[Columns.ACTIONS].mean() > mu_before


def test_actions_stay_inside_asymmetric_bounds():
    low, high = np.array([-1.0, 0.0], np.float32), np.array([1.0, 3.0], np.float32)
    space = gym.spaces.Box(low, high, dtype=np.float32)
    module = DDPGTorchRLModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=space,
        model_config={"actor_hidden": [8], "critic_hidden": [8]},
    )
    obs = {Columns.OBS: 1e3 * torch.randn(256, 3)}
    mu = module.forward_inference(obs)[Columns.ACTIONS]
    assert torch.equal(mu, module.forward_exploration(obs)[Columns.ACTIONS])  # deterministic
    assert ((mu >= torch.as_tensor(low)) & (mu <= torch.as_tensor(high))).all()

    noise = ExplorationNoise(
        input_action_space=space, exploration="gaussian", sigma=10.0, theta=0.15
    )
    batch = {Columns.ACTIONS: {(f"episode{i}",): [a] for i, a in enumerate(mu.numpy())}}
    noise(rl_module=module, batch=batch, episodes=[], explore=True)
    noisy = np.stack([items[0] for items in batch[Columns.ACTIONS].values()])
    assert noisy.dtype == np.float32
    assert ((noisy >= space.low) & (noisy <= space.high)).all()
    assert np.isin(noisy, [*space.low, *space.high]).mean() > 0.5  # σ = 10 ranges: mostly clipped


def noise_series(connector: ExplorationNoise, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """x_t and the noisy actions of one episode whose action μ(s) is always 0."""
    noise, actions = [], []
    for _ in range(steps):
        batch = {Columns.ACTIONS: {("episode",): [np.zeros(1, np.float32)]}}
        connector(rl_module=None, batch=batch, episodes=[], explore=True)
        noise.append(connector.noise["episode"][0])
        actions.append(batch[Columns.ACTIONS][("episode",)][0][0])
    return np.array(noise), np.array(actions)


def lag_one_correlation(x: np.ndarray) -> float:
    return float(np.corrcoef(x[:-1], x[1:])[0, 1])


def test_ou_noise_is_temporally_correlated_and_restarts_with_each_episode():
    np.random.seed(0)
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    ou = ExplorationNoise(input_action_space=space, exploration="ou", sigma=0.1, theta=0.15)
    gaussian = ExplorationNoise(
        input_action_space=space, exploration="gaussian", sigma=0.1, theta=0.15
    )
    x, actions = noise_series(ou, 3000)
    np.testing.assert_allclose(actions, 2.0 * x, rtol=1e-6)  # a = μ + (high − low) / 2 · x
    assert lag_one_correlation(x) == pytest.approx(1 - 0.15, abs=0.05)  # OU(1): ρ = 1 − θ
    assert abs(lag_one_correlation(noise_series(gaussian, 3000)[0])) < 0.1

    # A new episode starts from x_0 = 0, so its first noise is σ · ε; the ended one is dropped.
    np.random.seed(1)
    first = 0.1 * np.random.standard_normal(1)
    np.random.seed(1)
    ou(
        rl_module=None,
        batch={Columns.ACTIONS: {("next",): [np.zeros(1)]}},
        episodes=[],
        explore=True,
    )
    assert list(ou.noise) == ["next"]
    np.testing.assert_allclose(ou.noise["next"], first)

    batch = {Columns.ACTIONS: {("next",): [np.zeros(1)]}}
    ou(rl_module=None, batch=batch, episodes=[], explore=False)  # evaluation: no noise
    assert batch[Columns.ACTIONS][("next",)][0] == 0.0


@pytest.mark.parametrize(
    "settings",
    [
        {"tau": 0.0},
        {"tau": 1.5},
        {"gamma": 1.1},
        {"actor_lr": -1e-3},
        {"critic_lr": 0.0},
        {"n_step": 0},
        {"exploration": "uniform"},
        {"exploration_sigma": -0.1},
        {"ou_theta": 0.0},
        {"training_intensity": 0.0},
        {"num_steps_sampled_before_learning_starts": -1},
        {"replay_buffer_config": {"type": "MultiAgentReplayBuffer"}},
        {"replay_buffer_config": {"capacity": 0}},
        {"lr": 1e-3},
    ],
)
def test_validate_rejects_bad_settings(settings):
    (name,) = settings
    with pytest.raises(ValueError, match=re.escape(name)):
        pendulum_config(**settings).validate()


def test_validate_accepts_the_defaults_but_not_normalized_actions():
    pendulum_config().validate()
    with pytest.raises(ValueError, match="normalize_actions"):
        pendulum_config().environment(normalize_actions=True).validate()


def test_off_policy_run_with_four_sub_envs_and_prioritized_replay(ray_session):
    config = (
        pendulum_config(
            exploration="ou",
            num_steps_sampled_before_learning_starts=64,
            train_batch_size_per_learner=32,
            training_intensity=8,
            replay_buffer_config={
                "type": "PrioritizedEpisodeReplayBuffer",
                "capacity": 10_000,
                "alpha": 0.6,
                "beta": 0.4,
            },
        )
        .env_runners(num_envs_per_env_runner=4, rollout_fragment_length=8)
        .reporting(min_sample_timesteps_per_iteration=64)
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
        connector = next(
            c for c in algo.env_runner._module_to_env.connectors if isinstance(c, ExplorationNoise)
        )
        buffer_size = len(algo.local_replay_buffer)
    finally:
        algo.stop()
    assert results[-1][ENV_RUNNER_RESULTS]["num_env_steps_sampled_lifetime"] == 128
    assert buffer_size == 128
    learned = results[-1][LEARNER_RESULTS][DEFAULT_MODULE_ID]
    for key in ("critic_loss", "actor_loss", "q_mean", "td_error_mean"):
        assert np.isfinite(learned[key])
    # One OU process per sub-env (its ongoing episode), not one shared by the four.
    assert len(connector.noise) == 4
    assert len({float(x[0]) for x in connector.noise.values()}) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_learner_on_gpu(ray_session):
    config = pendulum_config(num_steps_sampled_before_learning_starts=32).learners(
        num_gpus_per_learner=1
    )
    config.reporting(min_sample_timesteps_per_iteration=64)
    algo = config.build_algo()
    try:
        learned = algo.train()[LEARNER_RESULTS][DEFAULT_MODULE_ID]
    finally:
        algo.stop()
    assert np.isfinite(learned["critic_loss"])


def greedy_return(module, episodes: int = 5) -> float:
    """Mean return of μ(s) (the exported inference path) on fixed Pendulum seeds."""
    env, returns = gym.make(PENDULUM), []
    for seed in range(100, 100 + episodes):
        obs, _ = env.reset(seed=seed)
        done, total = False, 0.0
        while not done:
            batch = {Columns.OBS: torch.as_tensor(obs[None], dtype=torch.float32)}
            action = module.forward_inference(batch)[Columns.ACTIONS][0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            done, total = terminated or truncated, total + reward
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.slow
def test_ddpg_learns_pendulum(ray_session):
    """2048 env steps, 1600 updates of 64 transitions (40-80 s on a shared 2-core box).

    Measured greedy returns after 2048 steps: −192 (seed 0), −156 (seed 1), −367 (seed 2);
    random or constant actions score −1200 to −1500, and so does a learner with a broken loss.
    """
    config = pendulum_config(
        hidden=(64, 64),
        gamma=0.98,
        tau=0.02,
        n_step=3,
        actor_lr=1e-3,
        critic_lr=2e-3,
        train_batch_size_per_learner=64,
        training_intensity=64,  # one update per env step
        num_steps_sampled_before_learning_starts=512,
    ).env_runners(rollout_fragment_length=64)
    algo = config.build_algo()
    try:
        before = greedy_return(algo.get_module())
        while algo.train()[ENV_RUNNER_RESULTS]["num_env_steps_sampled_lifetime"] < 2048:
            pass
        after = greedy_return(algo.get_module())
    finally:
        algo.stop()
    assert before < -900
    assert after > -500
