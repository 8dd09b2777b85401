"""B concurrent search sessions in a learned simulator: the state of the engine's MDP M and the
customer MDP's transition T^c (paper, "Problem Description"), batched.

    T^c(s^c, a^c) = <s, a, n + 1>   if a^c = turn_page
                  = terminates      if a^c = buy, or n > MaxIndex
    and on leave the next session starts from s' ~ P^c.

Each session is one float32 row, the engine's observation s (customer one-hots, dense features,
n / MaxIndex, clicks / page_size; pipeline/logs/observation.py), plus n as an integer for the
MaxIndex test. Customers s ~ P^c come from the GAN-SD generator in pools, encoded once, so an
arrival is a row copy and only the last two columns change while a customer turns pages.
`VirtualTaobao-v0` (where pi^c answers) and MAIL's environment (where the customer is the
learning agent) both step these sessions.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from pipeline.logs.observation import observation_dim
from pipeline.logs.schema import LogSpec
from pipeline.simulator.customers import CustomerCodec, Customers
from pipeline.simulator.data import TURN_PAGE

# Customers are generated, decoded and encoded in chunks of this size: a 65536-row batch
# spills the generator's activations out of cache and costs ~30% more per customer.
GENERATE_CHUNK = 4096


def engine_observation_space(spec: LogSpec) -> gym.spaces.Box:
    """[0, 1] everywhere (one-hots, n / MaxIndex, clicks / page_size) except the dense customer
    features, which are unbounded (layout in pipeline/logs/observation.py)."""
    dim = observation_dim(spec)
    low, high = np.zeros(dim, np.float32), np.ones(dim, np.float32)
    start = sum(spec.attr_cardinalities) + spec.n_query_categories
    dense = slice(start, start + spec.dense_dim)
    low[dense], high[dense] = -np.inf, np.inf
    return gym.spaces.Box(low, high, dtype=np.float32)


def _progress_scales(spec: LogSpec) -> tuple[float, float]:
    """The weights of n and of the last clicks in the observation's last two columns, read off
    the shared encoder so that updating those columns in place cannot drift from it."""
    one = Customers(
        np.zeros((1, spec.n_attrs), np.int64), np.zeros(1, np.int64), np.zeros((1, spec.dense_dim))
    )
    row = one.observation(spec, np.ones(1), np.ones(1))[0]
    return float(row[-2]), float(row[-1])


class CustomerArrivals:
    """First-page observations of customers drawn from P^c, `pool_size` generated at once."""

    def __init__(
        self,
        spec: LogSpec,
        codec: CustomerCodec,
        generator_net: torch.nn.Module,
        pool_size: int,
        rng: torch.Generator,
        device: torch.device,
    ):
        self.spec, self.codec, self.net = spec, codec, generator_net
        self.pool_size, self.rng, self.device = pool_size, rng, device
        self.pool = torch.empty((0, observation_dim(spec)), device=device)
        self.cursor = 0

    def discard(self) -> None:
        """Forget the pool (after a reseed, so the seed alone fixes the customers)."""
        self.cursor = len(self.pool)

    def draw(self, count: int) -> torch.Tensor:
        parts = []
        while count:
            if self.cursor == len(self.pool):
                self._refill()
            take = min(count, len(self.pool) - self.cursor)
            parts.append(self.pool[self.cursor : self.cursor + take])
            self.cursor += take
            count -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.inference_mode()
    def _refill(self) -> None:
        """The codec's vector is the observation's prefix (one-hots of the attribute groups and
        the query, then the dense features, standardised): de-standardise the dense part and
        leave n = 0 and clicks = 0. A test holds the pool to `Customers.observation`."""
        self.pool = torch.zeros((self.pool_size, observation_dim(self.spec)), device=self.device)
        categorical = self.codec.categorical_dim
        dense = slice(categorical, categorical + self.codec.dense_dim)
        mean = torch.tensor(self.codec.dense_mean, device=self.device)
        std = torch.tensor(self.codec.dense_std, device=self.device)
        for start in range(0, self.pool_size, GENERATE_CHUNK):
            rows = slice(start, min(start + GENERATE_CHUNK, self.pool_size))
            vectors = self.net.sample_vectors(rows.stop - start, self.rng)
            self.pool[rows, :categorical] = vectors[:, :categorical]
            self.pool[rows, dense] = vectors[:, dense] * std + mean
        self.cursor = 0


class LoggedArrivals:
    """First-page observations drawn uniformly, with replacement, from logged customers."""

    def __init__(self, obs: torch.Tensor, rng: torch.Generator):
        self.obs, self.rng, self.device = obs, rng, obs.device

    def discard(self) -> None:
        """Nothing is pooled: the generator's state alone fixes the draws."""

    def draw(self, count: int) -> torch.Tensor:
        return self.obs[torch.randint(len(self.obs), (count,), generator=self.rng)]


class Sessions:
    """`num_envs` sessions: observations, page indices, and T^c applied to a customer reply."""

    def __init__(self, spec: LogSpec, arrivals: CustomerArrivals, num_envs: int):
        self.spec, self.arrivals, self.device = spec, arrivals, arrivals.device
        self.page_scale, self.clicks_scale = _progress_scales(spec)
        self.obs = torch.zeros((num_envs, observation_dim(spec)), device=self.device)
        self.page = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    @torch.inference_mode()
    def arrive(self, rows: torch.Tensor | slice, count: int) -> None:
        """New customers s' ~ P^c in `rows`, on their first page (n = 0, no clicks yet)."""
        self.obs[rows] = self.arrivals.draw(count)
        self.page[rows] = 0

    @torch.inference_mode()
    def apply(
        self, rows: torch.Tensor | slice, clicks: torch.Tensor, decision: torch.Tensor
    ) -> torch.Tensor:
        """T^c for the customer replies (clicks, decision) of `rows`; returns terminated."""
        page = self.page[rows]
        terminated = (decision != TURN_PAGE) | (page >= self.spec.max_index)
        # A terminal observation keeps its page: n + 1 > MaxIndex lies outside the space.
        page = page + (~terminated).long()
        self.page[rows] = page
        self.obs[rows, -2] = page * self.page_scale
        self.obs[rows, -1] = clicks * self.clicks_scale
        return terminated

    @torch.inference_mode()
    def step(
        self,
        restart: torch.Tensor,
        respond: Callable[[torch.Tensor | slice], tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of all sessions with gymnasium's NEXT_STEP autoreset: sessions that ended
        on the previous step (`restart`) get a new customer, reward 0, not terminated; the
        others get `respond(rows)` -> (reward, terminated) of those rows."""
        if not restart.any():
            return respond(slice(None))
        n = len(restart)
        reward = torch.zeros(n, device=self.device)
        terminated = torch.zeros(n, dtype=torch.bool, device=self.device)
        live = (~restart).nonzero().squeeze(1)
        if len(live):
            reward[live], terminated[live] = respond(live)
        arriving = restart.nonzero().squeeze(1)
        self.arrive(arriving, len(arriving))
        return reward, terminated
