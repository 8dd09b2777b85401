"""The reference world: a seeded, parametric market that writes the historical logs and plays
"real Taobao" when a trained policy is deployed (design.md, "The reference world";
docs/world.md has the model and its calibration). Learners never import its hidden parameters."""

from __future__ import annotations

from pipeline.world.deploy import DeploymentReport, Estimate, deploy
from pipeline.world.generate import GenerateSummary, generate_logs
from pipeline.world.logging_policy import LoggingPolicy
from pipeline.world.market import World
from pipeline.world.params import WorldParams
from pipeline.world.rerank import RerankMarket

__all__ = [
    "DeploymentReport",
    "Estimate",
    "GenerateSummary",
    "LoggingPolicy",
    "RerankMarket",
    "World",
    "WorldParams",
    "deploy",
    "generate_logs",
]
