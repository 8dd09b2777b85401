"""`VirtualTaobao-v0`: the engine's MDP M of the paper with the learned simulator inside.

Paper, "Problem Description": the engine observes s (the customer with its request; we add the
page index n and the last page's clicks, pipeline/logs/observation.py), acts with a (the
ranking weights of a page view), and the customer answers with a^c ~ pi^c(s, a, n):

    T(s, a)     = s                       if a^c = turn_page,  s' ~ P^c otherwise
    T^c(s^c, a^c) = <s, a, n + 1>         if a^c = turn_page
                  = terminates            if a^c = buy, or n > MaxIndex
    reward      = 1 if a^c = buy else 0   (or the page's clicks, or the purchase amount)

A leave also ends the engine's episode: the next customer is a new episode, s' ~ P^c. Customers
s ~ P^c come from the GAN-SD generator, pi^c from MAIL (or its behaviour-cloning baseline).

`VirtualTaobaoVectorEnv` steps B customers with one forward pass of pi^c per step; that batch is
where throughput comes from. `VirtualTaobaoEnv` is the same core with B = 1. Nothing here
imports `pipeline.world`: the simulator knows the world only through its logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from pipeline.errors import UserError, validated
from pipeline.logs.schema import RewardColumn
from pipeline.simulator.checkpoint import load_simulator
from pipeline.simulator.config import Behaviour
from pipeline.simulator.data import BUY
from pipeline.simulator.sessions import CustomerArrivals, Sessions, engine_observation_space
from rllib_envs import ENV_ID


class VirtualTaobaoConfig(BaseModel):
    """`env_config` of `VirtualTaobao-v0` (RLlib passes an EnvContext, plus `num_envs` when it
    asks for the vector env)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    simulator: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, Path) else v)] = (
        Field(description="checkpoint directory or MLflow URI (runs:/<run_id>/simulator)")
    )
    behaviour: Behaviour = Behaviour.MAIL
    reward: RewardColumn = Field(RewardColumn.PURCHASE, description="paper: 1 per purchase")
    action_dim: int | None = Field(None, ge=1, description="must match the checkpoint when set")
    seed: int = Field(0, ge=0)
    customer_pool: int = Field(65536, ge=1, description="customers generated per refill")
    device: str = "cpu"
    num_envs: int = Field(1, ge=1)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        try:
            torch.device(value)
        except RuntimeError as exc:  # pydantic reports ValueErrors only
            raise ValueError(str(exc)) from exc
        return value

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> VirtualTaobaoConfig:
        return validated(cls, dict(config), f"{ENV_ID} env_config")


class _Simulation:
    """B sessions of the learned simulator: pi^c answers each page (MAIL's or BC's), the
    reward is read off its answer, T^c moves the sessions (pipeline/simulator/sessions.py)."""

    @torch.inference_mode()
    def __init__(self, config: VirtualTaobaoConfig):
        simulator = load_simulator(config.simulator)
        simulator.check_action_dim(config.action_dim)
        self.spec = simulator.spec
        self.action_dim = simulator.manifest.action_dim
        self.device = torch.device(config.device)
        self.policy = simulator.customer_policy(config.behaviour, self.device)
        self.amount = (
            simulator.component("amount", self.device)
            if config.reward is RewardColumn.AMOUNT
            else None
        )
        self.reward = config.reward
        self.rng = torch.Generator(self.device)
        arrivals = CustomerArrivals(
            self.spec,
            simulator.codec,
            simulator.component("customer_generator", self.device),
            config.customer_pool,
            self.rng,
            self.device,
        )
        self.sessions = Sessions(self.spec, arrivals, config.num_envs)

    def reseed(self, seed: int) -> None:
        """Restart the random stream; the pool is redrawn so the seed fixes the customers."""
        self.rng.manual_seed(seed)
        self.sessions.arrivals.discard()

    @torch.inference_mode()
    def respond(
        self, rows: torch.Tensor | slice, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One page view for the sessions in `rows`: (reward, terminated) of those rows."""
        obs = self.sessions.obs[rows]
        clicks, decision = self.policy.sample(obs, action, self.rng)
        reward = self._reward(obs, action, clicks, decision)
        return reward, self.sessions.apply(rows, clicks, decision)

    def _reward(self, obs, action, clicks, decision) -> torch.Tensor:
        if self.reward is RewardColumn.CLICKS:
            return clicks.float()
        buy = decision == BUY
        if self.reward is RewardColumn.PURCHASE:  # the paper's: 1 on a purchase
            return buy.float()
        amount = torch.zeros(len(buy), device=self.device)
        amount[buy] = self.amount.sample(obs[buy], action[buy], self.rng)
        return amount


def _config(config: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> VirtualTaobaoConfig:
    """RLlib passes one dict (an EnvContext), gymnasium.make passes keyword arguments."""
    return VirtualTaobaoConfig.parse({**(config or {}), **kwargs})


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A copy: the caller (RLlib's episodes) keeps it while the sessions change in place."""
    return tensor.to("cpu", copy=True).numpy()


def _bounded(actions: np.ndarray, device: torch.device) -> torch.Tensor:
    """Actions clipped to the Box [-1, 1]: the customer policy never sees weights outside the
    space, whatever the learner emits (RLlib's per-item clipping connector costs ~25% of
    sampling here, so learners may leave clipping to the env)."""
    return torch.as_tensor(actions, dtype=torch.float32, device=device).clamp(-1.0, 1.0)


def _seed(sim: _Simulation, seed: int) -> tuple[np.random.Generator, int]:
    """gymnasium's np_random is the root; the simulator's torch stream is drawn from it."""
    rng, seed = seeding.np_random(seed)
    sim.reseed(int(rng.integers(2**63)))
    return rng, seed


def _reset(env: VirtualTaobaoEnv | VirtualTaobaoVectorEnv, seed: int | None) -> Sessions:
    """Reseed when asked, then a new customer in every session."""
    if seed is not None:
        env._np_random, env._np_random_seed = _seed(env._sim, seed)
    sessions = env._sim.sessions
    sessions.arrive(slice(None), len(sessions.page))
    return sessions


class VirtualTaobaoVectorEnv(VectorEnv):
    """B customers of Virtual-Taobao stepped together (gymnasium 1.x NEXT_STEP autoreset).

    A sub-env that terminated on the previous step is reset on this one: its action is
    ignored, its reward is 0, it is neither terminated nor truncated, and its observation is a
    new customer's.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any):
        cfg = _config(config, kwargs)
        self._sim = _Simulation(cfg)
        self.num_envs = cfg.num_envs
        self.single_observation_space = engine_observation_space(self._sim.spec)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (self._sim.action_dim,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # Sessions that terminated on the last step: NEXT_STEP autoreset restarts them.
        self._restart = torch.zeros(self.num_envs, dtype=torch.bool, device=self._sim.device)
        self._np_random, self._np_random_seed = _seed(self._sim, cfg.seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._restart = torch.zeros_like(self._restart)
        return _numpy(_reset(self, seed).obs), {}

    @torch.inference_mode()
    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        sim = self._sim
        action = _bounded(actions, sim.device)
        reward, terminated = sim.sessions.step(
            self._restart, lambda rows: sim.respond(rows, action[rows])
        )
        self._restart = terminated
        truncated = np.zeros(self.num_envs, dtype=bool)
        return _numpy(sim.sessions.obs), _numpy(reward), _numpy(terminated), truncated, {}


class VirtualTaobaoEnv(gym.Env):
    """One customer at a time: the vector env's sessions with B = 1, for `check_env` and
    simple use. Episodes end by termination only (buy, leave, or n > MaxIndex)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any):
        cfg = _config(config, kwargs)
        if cfg.num_envs != 1:
            raise UserError(f"{ENV_ID}: num_envs={cfg.num_envs} needs VirtualTaobaoVectorEnv")
        self._sim = _Simulation(cfg)
        self.observation_space = engine_observation_space(self._sim.spec)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self._sim.action_dim,), np.float32)
        self._np_random, self._np_random_seed = _seed(self._sim, cfg.seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        return _numpy(_reset(self, seed).obs[0]), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        sim = self._sim
        action = _bounded(action, sim.device)
        reward, terminated = sim.respond(slice(None), action[None])
        return _numpy(sim.sessions.obs[0]), float(reward[0]), bool(terminated[0]), False, {}
