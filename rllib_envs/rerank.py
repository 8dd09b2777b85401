"""`ReRank-v0`: generating a list of k items from n candidates as an MDP (seed, "Strengthen the
way of learning").

    state   s_t = (the items placed at positions 0..t-1, the remaining candidates, the customer)
    action  a_t = one remaining candidate, placed at position t    (Discrete(N), masked)
    reward  r_t = the causal evaluator's p(pay) of a_t at position t given the items above,
                  as PAY / GMV / PAY_GMV (pipeline/rerank/rewards.py)
    episode k steps; the return sum_t r_t is the list's expected purchases (or GMV)

Requests are the validated logs; n varies per request (17, 30, 50, 100), the candidates are
padded to N = the largest n of the requests served, and `action_mask` removes padding and items
already placed (ray-2.60-notes §1d: the keys `action_mask` / `observations`).

`ReRankVectorEnv` steps B requests with one evaluator call per step. Every episode lasts exactly
k steps, so the B sub-envs reset together; `group_size` consecutive sub-envs then serve the same
request, which is how PPO-MC samples several permutations of one candidate set. The reset infos
of each sub-env carry `draw` (one id per group and reset) and `logged_rewards` (the evaluator's
step rewards of the logged order: REINFORCE's logged baseline).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from pipeline.errors import validated
from pipeline.rerank.evaluator import EvaluatorKind, load_evaluator
from pipeline.rerank.requests import Requests, load_requests
from pipeline.rerank.rewards import RewardKind, step_reward
from rllib_envs import RERANK_ENV_ID

_Path = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, Path) else v)]


class Split(enum.StrEnum):
    TRAIN = "train"
    TEST = "test"
    ALL = "all"


class ReRankConfig(BaseModel):
    """`env_config` of `ReRank-v0`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: _Path = Field(description="`ecomrl logs ingest` output holding rerank_lists/")
    evaluator: _Path = Field(description="directory of the trained evaluators (causal.*)")
    k: int = Field(17, ge=1, description="items per generated list")
    sizes: tuple[int, ...] | None = Field(None, description="serve only requests with these n")
    split: Split = Split.TRAIN
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share of requests")
    split_seed: int = Field(0, ge=0, description="seeds the train/test split of requests")
    reward: RewardKind = RewardKind.PAY
    gmv_weight: float = Field(0.5, ge=0, le=1, description="w of PAY_GMV")
    group_size: int = Field(1, ge=1, description="consecutive sub-envs sharing a request")
    seed: int = Field(0, ge=0, description="seeds which requests are served")
    device: str = "cpu"
    num_envs: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _groups(self) -> ReRankConfig:
        if self.num_envs % self.group_size:
            raise ValueError(
                f"num_envs ({self.num_envs}) must be a multiple of group_size ({self.group_size})"
            )
        return self

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> ReRankConfig:
        return validated(cls, dict(config), f"{RERANK_ENV_ID} env_config")


def served_requests(config: ReRankConfig) -> Requests:
    """The requests an env with `config` serves (split, then sizes)."""
    requests, _ = load_requests(config.requests, config.k)
    if config.split is not Split.ALL:
        train, test = requests.split(config.test_fraction, config.split_seed)
        requests = train if config.split is Split.TRAIN else test
    return requests.with_sizes(config.sizes)


def observation_space(n: int, item_dim: int, user_dim: int) -> gym.spaces.Dict:
    """The obs contract the generator module reads (pipeline/rerank/generator.py)."""
    unit = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
    return gym.spaces.Dict(
        {
            "action_mask": unit,
            "observations": gym.spaces.Dict(
                {
                    "items": gym.spaces.Box(-np.inf, np.inf, (n, item_dim), np.float32),
                    "user": gym.spaces.Box(0.0, 1.0, (user_dim,), np.float32),
                    "valid": unit,
                }
            ),
        }
    )


class _Lists:
    """B lists under construction, scored step by step by the causal evaluator."""

    def __init__(self, config: ReRankConfig):
        self.config = config
        self.device = torch.device(config.device)
        self.requests = served_requests(config)
        self.evaluator = load_evaluator(config.evaluator, EvaluatorKind.CAUSAL).to(self.device)
        self.tensors = {
            name: torch.as_tensor(getattr(self.requests, name), device=self.device)
            for name in ("user", "items", "valid", "price_quantile", "shown")
        }
        b = config.num_envs
        self.rows = torch.zeros(b, dtype=torch.long, device=self.device)
        self.chosen = torch.zeros(b, self.requests.valid.shape[1], dtype=torch.bool)
        self.t = 0
        self.state = None

    @property
    def k(self) -> int:
        return self.config.k

    def _inputs(self, rows: torch.Tensor):
        return self.tensors["user"][rows], self.tensors["items"][rows], self.tensors["valid"][rows]

    def _reward(self, pay: torch.Tensor, quantile: torch.Tensor) -> torch.Tensor:
        return step_reward(pay, quantile, self.config.reward, self.config.gmv_weight)

    @torch.inference_mode()
    def start(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """New requests (one per group, repeated `group_size` times); returns the reset infos."""
        groups = self.config.num_envs // self.config.group_size
        picked = rng.integers(len(self.requests), size=groups)
        self.rows = torch.as_tensor(np.repeat(picked, self.config.group_size), device=self.device)
        draws = np.repeat(rng.integers(2**62, size=groups), self.config.group_size)
        self.chosen.zero_()
        self.t = 0
        self.state = self.evaluator.start(*self._inputs(self.rows))
        return {"draw": draws, "logged_rewards": self._logged_rewards()}

    def _logged_rewards(self) -> np.ndarray:
        """(B, k) step rewards of the logged order (the baseline of seed's REINFORCE variant)."""
        state = self.evaluator.start(*self._inputs(self.rows))
        shown = self.tensors["shown"][self.rows]
        quantile = self.tensors["price_quantile"][self.rows]
        rewards = []
        for t in range(self.k):
            pay, _, state = self.evaluator.step(state, shown[:, t])
            rewards.append(self._reward(pay, quantile.gather(1, shown[:, t : t + 1])[:, 0]))
        return torch.stack(rewards, 1).float().cpu().numpy()

    @torch.inference_mode()
    def place(self, actions: np.ndarray) -> np.ndarray:
        """Put each action at position t; the step rewards (B,)."""
        action = torch.as_tensor(actions, dtype=torch.long, device=self.device)
        mask = self.mask()
        allowed = mask[torch.arange(len(action)), action.cpu()]
        if not bool(allowed.all()):
            bad = int(torch.nonzero(~allowed)[0, 0])
            raise ValueError(
                f"{RERANK_ENV_ID}: sub-env {bad} picked candidate {int(action[bad])}, which is "
                "padding or already placed (the module must apply action_mask)"
            )
        pay, _, self.state = self.evaluator.step(self.state, action)
        quantile = self.tensors["price_quantile"][self.rows].gather(1, action[:, None])[:, 0]
        self.chosen[torch.arange(len(action)), action.cpu()] = True
        self.t += 1
        return self._reward(pay, quantile).float().cpu().numpy()

    def mask(self) -> torch.Tensor:
        return self.tensors["valid"][self.rows].cpu() & ~self.chosen

    def observation(self) -> dict[str, Any]:
        user, items, valid = (x.cpu().numpy() for x in self._inputs(self.rows))
        return {
            "action_mask": self.mask().numpy().astype(np.float32),
            "observations": {"items": items, "user": user, "valid": valid.astype(np.float32)},
        }


def _config(config: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> ReRankConfig:
    """RLlib passes one dict (an EnvContext), gymnasium.make passes keyword arguments."""
    return ReRankConfig.parse({**(config or {}), **kwargs})


class ReRankVectorEnv(VectorEnv):
    """B lists built together (gymnasium 1.x NEXT_STEP autoreset): the step after the k-th is a
    reset of every sub-env, whose actions are ignored and whose rewards are 0."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any):
        cfg = _config(config, kwargs)
        self._lists = _Lists(cfg)
        self.num_envs = cfg.num_envs
        requests = self._lists.requests
        self.single_observation_space = observation_space(
            requests.valid.shape[1], requests.items.shape[2], requests.user.shape[1]
        )
        self.single_action_space = gym.spaces.Discrete(requests.valid.shape[1])
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._np_random, self._np_random_seed = seeding.np_random(cfg.seed)
        self._done = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._done = False
        infos = self._lists.start(self._np_random)
        return self._lists.observation(), infos

    def step(self, actions: np.ndarray):
        b = self.num_envs
        if self._done:  # NEXT_STEP autoreset: every sub-env ended on the last step
            obs, infos = self.reset()
            return obs, np.zeros(b, np.float32), np.zeros(b, bool), np.zeros(b, bool), infos
        rewards = self._lists.place(np.asarray(actions))
        self._done = self._lists.t == self._lists.k
        terminated = np.full(b, self._done)
        return self._lists.observation(), rewards, terminated, np.zeros(b, bool), {}


class ReRankEnv(gym.Env):
    """One request at a time (`gym.make("ReRank-v0")`): the vector env with B = 1."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any):
        self._vector = ReRankVectorEnv({**(config or {}), **kwargs, "num_envs": 1, "group_size": 1})
        self.observation_space = self._vector.single_observation_space
        self.action_space = self._vector.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, infos = self._vector.reset(seed=seed)
        return _first(obs), {key: value[0] for key, value in infos.items()}

    def step(self, action: int):
        obs, reward, terminated, truncated, _ = self._vector.step(np.array([action]))
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}


def _first(obs: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _first(value) if isinstance(value, dict) else value[0] for key, value in obs.items()
    }
