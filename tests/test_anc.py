"""ANC (eq. 3): the reward on hand-computed cases, the wrappers, mu from the manifest."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from pipeline.learners.anc import AncVectorWrapper, AncWrapper, anc_reward, make_anc_env


@pytest.mark.parametrize(
    ("reward", "action", "rho", "mu", "expected"),
    [
        (1.0, [0.0, 0.0], 1.0, 0.01, 1.0),  # ||a|| = 0 <= mu: no penalty
        (1.0, [3.0, 4.0], 1.0, 0.01, 1.0 / (1.0 + 4.99)),  # ||a|| = 5
        (2.0, [3.0, 4.0], 0.5, 1.0, 2.0 / (1.0 + 0.5 * 4.0)),
        (1.0, [0.6, 0.8], 1.0, 1.0, 1.0),  # ||a|| = mu exactly: max(0, 0) = 0
        (0.0, [30.0, 40.0], 1.0, 0.01, 0.0),  # no reward, nothing to shape
        (1.0, [3.0, 4.0], 0.0, 0.01, 1.0),  # rho = 0 switches ANC off
    ],
)
def test_anc_reward_matches_equation_3(reward, action, rho, mu, expected):
    got = anc_reward(np.array([reward]), np.array([action]), rho, mu)
    assert got[0] == pytest.approx(expected, rel=1e-12)


def test_anc_reward_is_batched():
    rewards = np.array([1.0, 1.0, 0.0])
    actions = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]])
    np.testing.assert_allclose(anc_reward(rewards, actions, 1.0, 1.0), [1.0, 0.2, 0.0])


class _Constant(gym.Env):
    """Reward 1 on every step, whatever the action."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Box(-10, 10, (2,))

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


def test_wrappers_shape_rewards_of_the_action_taken():
    env = AncWrapper(_Constant(), rho=1.0, mu=1.0)
    env.reset()
    assert env.step(np.array([3.0, 4.0]))[1] == pytest.approx(0.2)
    vector = AncVectorWrapper(gym.vector.SyncVectorEnv([_Constant, _Constant]), rho=1.0, mu=1.0)
    vector.reset(seed=0)
    _, rewards, *_ = vector.step(np.array([[0.0, 0.5], [3.0, 4.0]]))
    np.testing.assert_allclose(rewards, [1.0, 0.2])


def test_anc_env_wraps_any_registered_env():
    single = make_anc_env({"env": "Pendulum-v1", "rho": 1.0, "mu": 0.5})
    assert isinstance(single, AncWrapper)
    vector = make_anc_env({"env": "Pendulum-v1", "rho": 1.0, "mu": 0.5, "num_envs": 3})
    assert isinstance(vector, AncVectorWrapper) and vector.num_envs == 3
    with pytest.raises(ValueError, match="'mu'"):
        make_anc_env({"env": "Pendulum-v1", "rho": 1.0})
