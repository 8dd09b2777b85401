"""One policy deployed in the reference world (pipeline/world/deploy.py) on each evaluation
day, and in the simulator (pipeline/simulator/deploy.py) on the world's day-0 customers.

Every policy meets the same customers: the world draws them from the deployment seed before any
policy acts, and the simulator replays the first-page observations the world showed on day 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.evaluation.config import EvaluationConfig
from pipeline.simulator.checkpoint import load_simulator
from pipeline.simulator.config import Behaviour
from pipeline.simulator.deploy import SimulatedDeployment, simulate
from pipeline.world import DeploymentReport, LoggingPolicy, World, deploy

Policy = Callable[[np.ndarray], np.ndarray]
RANDOM = "random"  # the logging policy, the paper's "random" baseline


@dataclass(frozen=True)
class PolicyScore:
    name: str
    world: dict[int, DeploymentReport]  # by day
    simulator: dict[Behaviour, SimulatedDeployment]


class _FirstPages:
    """`policy`, recording the observations of first pages (page index column 0)."""

    def __init__(self, policy: Policy):
        self.policy, self.first = policy, []

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.first.append(obs[obs[:, -2] == 0])
        return self.policy(obs)


class Evaluation:
    """The world of the logs and a simulator; `score` deploys one policy in both."""

    def __init__(self, simulator: str | Path, config: EvaluationConfig):
        self.simulator, self.config = load_simulator(simulator), config  # read (downloaded) once
        self.spec = self.simulator.spec
        self.world = World(self.spec, seed=config.world_seed)

    def random_policy(self) -> Policy:
        return LoggingPolicy(self.spec, seed=self.config.seed)

    def score(self, name: str, policy: Policy) -> PolicyScore:
        c = self.config
        recorder = _FirstPages(policy)
        world = {
            day: deploy(
                self.world,
                recorder if day == 0 else policy,
                c.customers,
                day=day,
                scenario=c.scenario,
                seed=c.seed,
                confidence=c.confidence,
            )
            for day in c.days
        }
        customers = np.concatenate(recorder.first)
        simulated = {
            b: simulate(self.simulator, b, policy, customers, c.seed, c.confidence)
            for b in Behaviour
        }
        return PolicyScore(name, world, simulated)
