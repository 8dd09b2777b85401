"""`VirtualTaobao-v0` on random-weight simulators: the paper's MDP, gymnasium's vector API,
seeding, bad inputs, MLflow checkpoints and one PPO iteration on RLlib."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from simulator_factory import random_simulator

from pipeline import tracking
from pipeline.errors import UserError
from pipeline.logs.observation import observation_dim
from pipeline.logs.schema import CustomerAction, LogSpec
from pipeline.simulator.customers import CustomerCodec, Customers
from rllib_envs import ENV_ID, register
from rllib_envs.virtual_taobao import VirtualTaobaoEnv, VirtualTaobaoVectorEnv

SPEC = LogSpec()
POOL = 256  # customers per refill: small, so tests also cross refills


@pytest.fixture(scope="module")
def sims(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("simulators")
    return {
        "random": random_simulator(root / "random"),
        "buy": random_simulator(root / "buy", decision=CustomerAction.BUY),
        "turn_page": random_simulator(root / "turn_page", decision=CustomerAction.TURN_PAGE),
        "leave": random_simulator(root / "leave", decision=CustomerAction.LEAVE),
    }


def make(simulator: Path | str, num_envs: int = 8, **config) -> VirtualTaobaoVectorEnv:
    return VirtualTaobaoVectorEnv(
        simulator=simulator, num_envs=num_envs, customer_pool=POOL, **config
    )


def actions(env: VirtualTaobaoVectorEnv, seed: int = 0) -> np.ndarray:
    env.action_space.seed(seed)
    return env.action_space.sample()


def decode(obs: np.ndarray) -> Customers:
    """The customers behind observations: the observation starts with the codec's layout."""
    codec = CustomerCodec(
        (*SPEC.attr_cardinalities, SPEC.n_query_categories),
        (0.0,) * SPEC.dense_dim,
        (1.0,) * SPEC.dense_dim,
    )
    return codec.decode(obs[:, : codec.dim])


def test_single_env_passes_gymnasium_check(sims):
    env = gym.make(ENV_ID, simulator=str(sims["random"]), customer_pool=POOL)
    assert isinstance(env.unwrapped, VirtualTaobaoEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the passive checker reports problems as warnings
        warnings.filterwarnings("ignore", "(?s).*space (minimum|maximum) value is")  # dense
        check_env(env.unwrapped)


def test_registered_with_tune_and_gymnasium(sims):
    from ray.tune.registry import ENV_CREATOR, _global_registry

    register()  # idempotent
    creator = _global_registry.get(ENV_CREATOR, ENV_ID)
    config = {"simulator": str(sims["random"]), "customer_pool": POOL}
    assert isinstance(creator(config), VirtualTaobaoEnv)
    assert isinstance(creator(config | {"num_envs": 3}), VirtualTaobaoVectorEnv)
    env = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", **config)
    assert isinstance(env, VirtualTaobaoVectorEnv) and env.num_envs == 3
    with pytest.raises(UserError, match="num_envs=3 needs VirtualTaobaoVectorEnv"):
        VirtualTaobaoEnv(config | {"num_envs": 3})


def test_vector_env_spaces_and_dtypes(sims):
    env = make(sims["random"], num_envs=5)
    dim = observation_dim(SPEC)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert env.single_observation_space.shape == (dim,)
    assert env.single_action_space == gym.spaces.Box(-1.0, 1.0, (SPEC.action_dim,), np.float32)
    assert env.action_space.shape == (5, SPEC.action_dim)
    obs, info = env.reset(seed=0)
    assert obs.shape == (5, dim) and obs.dtype == np.float32 and info == {}
    assert obs in env.observation_space
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(actions(env))
        assert obs.shape == (5, dim) and obs.dtype == np.float32
        assert obs in env.observation_space
        assert reward.shape == (5,) and reward.dtype == np.float32
        assert terminated.dtype == bool and truncated.dtype == bool and not truncated.any()
        assert info == {}


def test_observations_are_the_shared_encoding(sims):
    env = make(sims["turn_page"], reward="num_clicks")
    obs, _ = env.reset(seed=0)
    customers = decode(obs)
    first = np.zeros(len(customers), np.int64)
    np.testing.assert_allclose(obs, customers.observation(SPEC, first, first), atol=1e-6)
    obs, clicks, *_ = env.step(actions(env))
    expected = customers.observation(SPEC, first + 1, clicks.astype(np.int64))
    np.testing.assert_allclose(obs, expected, atol=1e-6)


def rollout(env: VirtualTaobaoVectorEnv, seed: int | None, steps: int = 6) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        out.extend(env.step(actions(env, seed=t))[:3])
    return out


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_seeding_is_deterministic(sims):
    env, other = make(sims["random"], seed=0), make(sims["random"], seed=5)
    first = rollout(env, seed=7)
    assert same(first, rollout(other, seed=7))  # reset(seed) overrides the config's seed
    assert same(first, rollout(env, seed=7))  # reseeding a used env starts over
    assert not same(first, rollout(env, seed=8))
    configured = rollout(make(sims["random"], seed=3), seed=None)
    assert same(configured, rollout(env, seed=3))  # the config's seed is reset(seed=...)'s
    assert not same(configured, rollout(make(sims["random"], seed=4), seed=None))


def test_next_step_autoreset(sims):
    env = make(sims["random"], num_envs=64)
    env.reset(seed=0)
    restarting = np.zeros(64, bool)
    restarts = 0
    for t in range(10):
        obs, reward, terminated, truncated, _ = env.step(actions(env, seed=t))
        # A sub-env that finished last step restarts: no reward, not done, a new first page.
        assert (reward[restarting] == 0).all() and not terminated[restarting].any()
        assert (obs[restarting, -2:] == 0).all()
        restarts += restarting.sum()
        restarting = terminated | truncated
    assert 0 < restarts < 64 * 10


def test_autoreset_ignores_the_action(sims):
    envs = [make(sims["buy"], seed=1), make(sims["buy"], seed=1)]
    first = [env.reset()[0] for env in envs]
    for env in envs:
        assert env.step(actions(env, seed=0))[2].all()  # every customer bought
    restart = [env.step(actions(env, seed=i + 1)) for i, env in enumerate(envs)]
    assert same(list(restart[0][:3]), list(restart[1][:3]))
    assert not restart[0][2].any() and (restart[0][1] == 0).all()
    assert not np.array_equal(decode(restart[0][0]).attrs, decode(first[0]).attrs)
    again = [env.step(actions(env, seed=9)) for env in envs]
    assert same(list(again[0][:3]), list(again[1][:3]))


@pytest.mark.parametrize("max_index", [0, 3])
def test_turning_pages_ends_after_max_index(tmp_path, max_index):
    spec = LogSpec(max_index=max_index)
    sim = random_simulator(tmp_path, spec, decision=CustomerAction.TURN_PAGE)
    env = make(sim, num_envs=4)
    env.reset(seed=0)
    # T^c: turn_page -> <s, a, n + 1>, and n > MaxIndex terminates: exactly MaxIndex + 1 pages.
    for page in range(1, max_index + 2):
        obs, reward, terminated, _, _ = env.step(actions(env, seed=page))
        assert (reward == 0).all()
        assert terminated.all() == (page == max_index + 1) and terminated.any() == terminated.all()
        if not terminated.any():
            np.testing.assert_allclose(obs[:, -2], page / max(max_index, 1))
    obs, _, terminated, _, _ = env.step(actions(env))
    assert not terminated.any() and (obs[:, -2] == 0).all()


@pytest.mark.parametrize(("decision", "purchase"), [("buy", 1.0), ("leave", 0.0)])
def test_buy_or_leave_terminates_at_once(sims, decision, purchase):
    env = make(sims[decision])
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(actions(env))
    assert terminated.all() and (reward == purchase).all()


def test_purchase_reward_is_one_on_a_buy_only(sims):
    env = make(sims["random"], num_envs=64)
    env.reset(seed=0)
    rewards = []
    for t in range(6):
        _, reward, terminated, _, _ = env.step(actions(env, seed=t))
        assert set(np.unique(reward)) <= {0.0, 1.0} and not (reward > 0)[~terminated].any()
        rewards.append(reward)
    assert 0 < np.mean(rewards) < 1
    env = make(sims["turn_page"])
    env.reset(seed=0)
    assert (env.step(actions(env))[1] == 0).all()


def test_clicks_reward_is_the_sampled_clicks(sims):
    env = make(sims["random"], num_envs=64, reward="num_clicks")
    env.reset(seed=0)
    obs, reward, *_ = env.step(actions(env))
    # The next observation carries the clicks the customer made (last column: clicks / size).
    np.testing.assert_allclose(reward, obs[:, -1] * SPEC.page_size, atol=1e-4)
    assert (reward == np.round(reward)).all() and reward.max() <= SPEC.page_size
    assert reward.max() > 0


def test_amount_reward_is_positive_on_a_buy_only(sims):
    def first_rewards(sim: str) -> tuple[np.ndarray, np.ndarray]:
        env = make(sims[sim], num_envs=64, reward="purchase_amount")
        env.reset(seed=0)
        return env.step(actions(env))[1:3]

    assert (first_rewards("buy")[0] > 0).all()
    assert (first_rewards("turn_page")[0] == 0).all() and (first_rewards("leave")[0] == 0).all()
    reward, terminated = first_rewards("random")
    assert (reward > 0).any() and not (reward > 0)[~terminated].any()


def _flip_bytes(root: Path, component: str = "customer_policy") -> Path:
    path = root / f"{component}.safetensors"
    data = bytearray(path.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])
    path.write_bytes(bytes(data))
    return root


BAD_INPUTS = {
    "schema_version": (lambda r: random_simulator(r, schema_version="0"), {}, "schema version '0'"),
    "format_version": (lambda r: random_simulator(r, format_version=99), {}, "format version 99"),
    "corrupt_weights": (
        lambda r: _flip_bytes(random_simulator(r)),
        {},
        "customer_policy.safetensors: corrupt",
    ),
    "bc_weights": (
        lambda r: _flip_bytes(random_simulator(r), "bc_customer_policy"),
        {"behaviour": "bc"},
        "bc_customer_policy.safetensors: corrupt",
    ),
    "action_dim": (
        random_simulator,
        {"action_dim": 5},
        "action dimension 27, the environment is configured for 5",
    ),
    "not_a_checkpoint": (lambda r: r, {}, "not a simulator checkpoint"),
    "behaviour": (random_simulator, {"behaviour": "gail"}, "behaviour: Input should be 'mail'"),
    "reward": (random_simulator, {"reward": "revenue"}, "reward: Input should be 'purchase'"),
    "unknown_key": (random_simulator, {"max_pages": 3}, "max_pages: Extra inputs"),
    "device": (random_simulator, {"device": "tpu9"}, "device"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_a_clear_user_error(tmp_path, case):
    write, config, message = BAD_INPUTS[case]
    simulator = write(tmp_path)
    with pytest.raises(UserError, match=message):
        make(simulator, **config)
    with pytest.raises(UserError, match=message):
        gym.make(ENV_ID, simulator=str(simulator), **config)


def test_simulator_from_an_mlflow_run(sims, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # the local store keeps artifacts beside the working directory
    with tracking.run("simulator") as run:
        mlflow.log_artifacts(str(sims["random"]), "simulator")
    remote = make(f"runs:/{run.info.run_id}/simulator")
    assert same(rollout(remote, seed=0, steps=2), rollout(make(sims["random"]), seed=0, steps=2))


def test_ppo_iteration_on_the_vector_env(ray_session, sims):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_EPISODES

    config = (
        PPOConfig()
        .environment(ENV_ID, env_config={"simulator": str(sims["random"]), "customer_pool": 1024})
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=16,
            gym_env_vectorize_mode="vector_entry_point",
        )
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=256, minibatch_size=128, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [16]})
    )
    algo = config.build_algo()
    try:
        assert isinstance(algo.env_runner.env.unwrapped, VirtualTaobaoVectorEnv)
        result = algo.train()
        assert result[ENV_RUNNER_RESULTS][NUM_EPISODES] > 0
    finally:
        algo.stop()
