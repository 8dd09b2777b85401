"""The environment of MAIL's joint policy (Algorithm 2, lines 5-8), batched.

MAIL learns the engine policy pi_sigma and the customer policy pi^c_kappa together as one
joint policy pi^c_{kappa,sigma}: given a customer s ~ P^c at page n, it emits the engine action
a ~ pi_sigma(s) and the customer's reply a^c ~ pi^c(<s, a, n>). This environment is what is
left: it draws customers from the learned P^c and applies T^c:

    T^c(s^c, a^c) = <s' ~ P^c, pi(s'), 0>   if a^c = leave   (here: the episode ends; the next
                                                              one starts from s' ~ P^c)
                    <s, a, n + 1>           if a^c = turn_page
                    terminates              if a^c = buy, or n > MaxIndex

The action is (a, clicks, decision); the reward is 0 here and is set by MAIL from its
discriminator R^c_theta after sampling (`mail.py`), so the environment never needs theta.
Autoreset follows gymnasium's NEXT_STEP mode, which RLlib's env runners use.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from pipeline.logs.observation import observation_dim
from pipeline.logs.schema import LogSpec
from pipeline.simulator.customer_pool import CustomerPool
from pipeline.simulator.customers import CustomerCodec
from pipeline.simulator.data import TURN_PAGE
from pipeline.simulator.weights import load_module


def joint_action_space(spec: LogSpec) -> gym.spaces.Tuple:
    """(engine action a, clicks 0..page_size, decision buy | turn_page | leave). The engine
    action is unbounded: the customer policy sees exactly what the engine emitted."""
    return gym.spaces.Tuple(
        (
            gym.spaces.Box(-np.inf, np.inf, (spec.action_dim,), np.float32),
            gym.spaces.Discrete(spec.page_size + 1),
            gym.spaces.Discrete(3),
        )
    )


def observation_space(spec: LogSpec) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, (observation_dim(spec),), np.float32)


class MailVectorEnv(gym.vector.VectorEnv):
    """`num_envs` customers at once. RLlib builds it with gym_env_vectorize_mode=
    "vector_entry_point", adding "num_envs" to the env_config. env_config: generator (path of
    the GAN-SD weights), spec and codec (JSON), seed, customer_pool."""

    metadata: ClassVar[dict] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, config: dict):
        self.log_spec = LogSpec.model_validate(config["spec"])
        self.num_envs = int(config.get("num_envs", 1))
        self.single_observation_space = observation_space(self.log_spec)
        self.single_action_space = joint_action_space(self.log_spec)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        seed = int(config.get("seed", 0)) + 1000 * int(getattr(config, "worker_index", 0))
        self._pool = CustomerPool(
            load_module(config["generator"]),
            CustomerCodec.from_json(config["codec"]),
            int(config.get("customer_pool", 65536)),
            torch.Generator().manual_seed(seed),
        )
        n = self.num_envs
        self._page = np.zeros(n, np.int64)
        self._clicks = np.zeros(n, np.int64)
        self._done = np.zeros(n, bool)
        self._customers = self._pool.draw(n)

    def _observe(self) -> np.ndarray:
        return self._customers.observation(self.log_spec, self._page, self._clicks)

    def _new_customers(self, mask: np.ndarray) -> None:
        fresh = self._pool.draw(int(mask.sum()))
        for name in ("attrs", "query", "dense"):
            getattr(self._customers, name)[mask] = getattr(fresh, name)
        self._page[mask] = 0
        self._clicks[mask] = 0

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._pool.generator.manual_seed(int(np.atleast_1d(seed)[0]))
        self._new_customers(np.ones(self.num_envs, bool))
        self._done[:] = False
        return self._observe(), {}

    def step(self, actions):
        _, clicks, decision = (np.asarray(x) for x in actions)
        restart = self._done
        ended = (decision != TURN_PAGE) | (self._page + 1 > self.log_spec.max_index)
        terminated = ended & ~restart
        self._page = np.where(restart, 0, self._page + 1)
        self._clicks = np.where(restart, 0, clicks.astype(np.int64))
        if restart.any():  # NEXT_STEP autoreset: the finished ones start a new session now
            self._new_customers(restart)
        self._done = terminated
        obs = self._observe()
        zeros = np.zeros(self.num_envs, np.float32)
        return obs, zeros, terminated, np.zeros(self.num_envs, bool), {}
