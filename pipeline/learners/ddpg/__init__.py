"""DDPG (Lillicrap et al. 2015) on RLlib's new API stack: algorithm and config (`ddpg.py`),
RLModule (`ddpg_module.py`), learner (`ddpg_learner.py`), exploration noise (`exploration.py`)."""

from pipeline.learners.ddpg.ddpg import DDPG, DDPGConfig
from pipeline.learners.ddpg.ddpg_learner import DDPGTorchLearner
from pipeline.learners.ddpg.ddpg_module import DDPGTorchRLModule
from pipeline.learners.ddpg.exploration import ExplorationNoise

__all__ = ["DDPG", "DDPGConfig", "DDPGTorchLearner", "DDPGTorchRLModule", "ExplorationNoise"]
