"""ANC, the action norm constraint (paper, "ANC: Reduce Overfitting to Virtual-Taobao", eq. 3):

    r'(s, a) = r(s, a) / (1 + rho * max(||a|| - mu, 0))

A policy may take any action, but rewards earned with actions larger than "the norms of most
historical actions" are discounted, so it improves on the logged policy without leaving the
region where the simulator was fitted. It is an environment wrapper, so it works with every
learner (PPO, TRPO, DDPG) and any Box-action env: the registered env `ANC_ENV_ID` wraps the env
named in its config, single or vectorised.

mu: the paper's mu = 0.01 is on the scale of Taobao's logged actions, which we do not know.
Here mu defaults to the 90th percentile of the logged action norms recorded in the simulator's
manifest (`logged_action_norm.p90`): the norm that "most historical actions" stay below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

ANC_ENV_ID = "ANC"
# The manifest metric that mu defaults to (pipeline/simulator/build.py records it).
LOGGED_NORM_METRIC = "logged_action_norm.p90"


class AncConfig(BaseModel):
    """rho and mu of eq. 3; mu None means the logged action norms' 90th percentile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rho: float = Field(1.0, ge=0, description="penalty slope (paper: 1)")
    mu: float | None = Field(
        None, ge=0, description="free norm; default: p90 of the logged action norms"
    )


def anc_reward(reward: np.ndarray, action: np.ndarray, rho: float, mu: float) -> np.ndarray:
    """Eq. 3 for a batch: reward (B,), action (B, action_dim)."""
    excess = np.maximum(np.linalg.norm(action, axis=-1) - mu, 0.0)
    return (reward / (1.0 + rho * excess)).astype(np.asarray(reward).dtype, copy=False)


def _taken(action, space: gym.spaces.Box) -> np.ndarray:
    """The action as the env applies it: clipped to its Box (envs clip what learners emit)."""
    return np.clip(np.asarray(action, np.float32), space.low, space.high)


class AncWrapper(gym.Wrapper):
    """A single env with eq. 3's rewards."""

    def __init__(self, env: gym.Env, rho: float, mu: float):
        super().__init__(env)
        self.rho, self.mu = rho, mu

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        taken = _taken(action, self.env.action_space)
        shaped = anc_reward(np.float64(reward), taken.astype(np.float64), self.rho, self.mu)
        return obs, float(shaped), terminated, truncated, info


class AncVectorWrapper(gym.vector.VectorWrapper):
    """A vector env with eq. 3's rewards (rewards of autoreset steps are 0 and stay 0)."""

    def __init__(self, env: gym.vector.VectorEnv, rho: float, mu: float):
        super().__init__(env)
        self.rho, self.mu = rho, mu

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        shaped = anc_reward(
            rewards, _taken(actions, self.env.single_action_space), self.rho, self.mu
        )
        return obs, shaped, terminated, truncated, info


def _inner_creator(env_id: str) -> Callable[[dict], gym.Env | gym.vector.VectorEnv]:
    """The wrapped env's creator: from Ray Tune's registry, else from gymnasium's."""
    from ray.tune.registry import ENV_CREATOR, _global_registry

    if _global_registry.contains(ENV_CREATOR, env_id):
        return _global_registry.get(ENV_CREATOR, env_id)

    def make(config: dict) -> gym.Env | gym.vector.VectorEnv:
        kwargs = {k: v for k, v in config.items() if k != "num_envs"}
        if "num_envs" in config:
            return gym.make_vec(env_id, config["num_envs"], vectorization_mode="sync", **kwargs)
        return gym.make(env_id, **kwargs)

    return make


def make_anc_env(config: Mapping[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """The `ANC` env: config {"env": inner id, "env_config": {...}, "rho": .., "mu": ..} (plus
    RLlib's `num_envs` for a vector env)."""
    for key in ("env", "rho", "mu"):
        if key not in config:
            raise ValueError(f"{ANC_ENV_ID} env_config needs {key!r}")
    inner = dict(config.get("env_config") or {})
    if "num_envs" in config:
        inner["num_envs"] = config["num_envs"]
    env = _inner_creator(config["env"])(inner)
    if isinstance(env, gym.vector.VectorEnv):
        return AncVectorWrapper(env, float(config["rho"]), float(config["mu"]))
    return AncWrapper(env, float(config["rho"]), float(config["mu"]))


def register() -> None:
    """Register `ANC_ENV_ID` with Ray Tune (workers re-register on import)."""
    from ray.tune.registry import register_env

    register_env(ANC_ENV_ID, make_anc_env)


def anc_environment(env_id: str, env_config: Mapping[str, Any], rho: float, mu: float) -> tuple:
    """(env, env_config) for `AlgorithmConfig.environment`: `env_id` wrapped in ANC."""
    register()
    return ANC_ENV_ID, {"env": env_id, "env_config": dict(env_config), "rho": rho, "mu": mu}
