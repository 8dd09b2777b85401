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

from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from pipeline.logs.schema import LogSpec
from pipeline.simulator.customers import CustomerCodec
from pipeline.simulator.data import open_training_data
from pipeline.simulator.sessions import (
    CustomerArrivals,
    LoggedArrivals,
    Sessions,
    engine_observation_space,
)
from pipeline.weights import load_module


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


class MailVectorEnv(gym.vector.VectorEnv):
    """`num_envs` customers at once. RLlib builds it with gym_env_vectorize_mode=
    "vector_entry_point", adding "num_envs" to the env_config. env_config: generator (path of
    the GAN-SD weights), spec and codec (JSON), seed, customer_pool; logged_customers to start
    sessions from the logged customers instead (MailConfig.customers)."""

    metadata: ClassVar[dict] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, config: dict):
        self.log_spec = LogSpec.model_validate(config["spec"])
        self.num_envs = int(config.get("num_envs", 1))
        self.single_observation_space = engine_observation_space(self.log_spec)
        self.single_action_space = joint_action_space(self.log_spec)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rng = torch.Generator().manual_seed(int(config.get("seed", 0)))
        self._sessions = Sessions(self.log_spec, self._arrivals(config), self.num_envs)
        self._restart = torch.zeros(self.num_envs, dtype=torch.bool)

    def _arrivals(self, config: dict) -> CustomerArrivals | LoggedArrivals:
        """GAN-SD's customers, or the logged ones when config["logged_customers"] names the
        ingested data ({"root", "scenario", "time_slice"})."""
        logged = config.get("logged_customers")
        if logged:
            data = open_training_data(Path(logged["root"]))
            customers, _ = data.customers(logged["scenario"], logged["time_slice"])
            zeros = np.zeros(len(customers.query))
            obs = torch.as_tensor(customers.observation(self.log_spec, zeros, zeros))
            return LoggedArrivals(obs, self._rng)
        return CustomerArrivals(
            self.log_spec,
            CustomerCodec.from_json(config["codec"]),
            load_module(config["generator"]),
            int(config.get("customer_pool", 65536)),
            self._rng,
            torch.device("cpu"),
        )

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng.manual_seed(int(np.atleast_1d(seed)[0]))
            self._sessions.arrivals.discard()
        self._sessions.arrive(slice(None), self.num_envs)
        self._restart[:] = False
        return self._sessions.obs.numpy().copy(), {}

    def step(self, actions):
        clicks, decision = (torch.as_tensor(np.asarray(x)) for x in actions[1:])
        zeros = torch.zeros(self.num_envs)

        def reply(rows):  # the customer's reply is part of the joint action
            return zeros[rows], self._sessions.apply(rows, clicks[rows], decision[rows])

        _, terminated = self._sessions.step(self._restart, reply)
        self._restart = terminated
        truncated = np.zeros(self.num_envs, bool)
        obs = self._sessions.obs.numpy().copy()
        return obs, zeros.numpy(), terminated.numpy(), truncated, {}
