"""Deploying an engine policy in the learned simulator on GIVEN customers.

The evaluation (pipeline/evaluation) scores a policy in the reference world and here on the same
customers: it passes the first-page observations of the world's sessions, and each plays one
session against the simulator's pi^c (MAIL's or BC's) under T^c (sessions.py). R2P is the
paper's offline measure ("Empirical Study": offline "we only use R2P").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.simulator.checkpoint import Simulator
from pipeline.simulator.config import Behaviour
from pipeline.simulator.data import BUY
from pipeline.simulator.sessions import Sessions
from pipeline.stats import Estimate, ratio_estimate, z_value


@dataclass(frozen=True)
class SimulatedDeployment:
    r2p: Estimate  # CI clustered by session
    sessions: int
    page_views: int


class _GivenCustomers:
    """Arrivals in order from a fixed array of first-page observations (Sessions' interface)."""

    def __init__(self, obs: torch.Tensor):
        self.obs, self.device, self.cursor = obs, obs.device, 0

    def draw(self, count: int) -> torch.Tensor:
        rows = self.obs[self.cursor : self.cursor + count]
        self.cursor += count
        return rows


@torch.inference_mode()
def simulate(
    sim: Simulator,
    behaviour: Behaviour,
    policy: Callable[[np.ndarray], np.ndarray],
    customers: np.ndarray,
    seed: int = 0,
    confidence: float = 0.95,
) -> SimulatedDeployment:
    """One session per row of `customers` (first-page observations, n = 0) under `policy`
    (obs (B, obs_dim) float32 -> actions (B, action_dim)) in the loaded simulator `sim`; all
    sessions stepped together."""
    customer = sim.customer_policy(behaviour)
    rng = torch.Generator().manual_seed(seed)
    n = len(customers)
    sessions = Sessions(sim.spec, _GivenCustomers(torch.as_tensor(customers)), n)
    sessions.arrive(slice(None), n)
    pages, buys = np.zeros(n), np.zeros(n)
    live = torch.arange(n)
    while len(live):
        obs = sessions.obs[live]
        action = torch.as_tensor(policy(obs.numpy()), dtype=torch.float32)
        clicks, decision = customer.sample(obs, action, rng)
        pages[live.numpy()] += 1
        buys[live.numpy()] += (decision == BUY).numpy()
        live = live[~sessions.apply(live, clicks, decision)]
    r2p = ratio_estimate(buys, pages, z_value(confidence))
    return SimulatedDeployment(r2p, n, int(pages.sum()))


def simulated_customers(sim: Simulator, count: int, seed: int = 0) -> np.ndarray:
    """`count` first-page observations of customers drawn from the simulator's own P^c
    (GAN-SD): the customers of an evaluation that has no world to draw them from."""
    from pipeline.simulator.sessions import CustomerArrivals

    rng = torch.Generator().manual_seed(seed)
    generator = sim.component("customer_generator")
    arrivals = CustomerArrivals(sim.spec, sim.codec, generator, count, rng, torch.device("cpu"))
    with torch.inference_mode():
        return arrivals.draw(count).numpy()
