"""TRPO (Schulman et al. 2015) on RLlib's new API stack: `TRPOConfig`/`TRPO` (trpo.py) and the
learner that does the trust-region update (`TRPOTorchLearner`, trpo_learner.py)."""

from pipeline.learners.trpo.trpo import TRPO, TRPOConfig
from pipeline.learners.trpo.trpo_learner import TRPOTorchLearner

__all__ = ["TRPO", "TRPOConfig", "TRPOTorchLearner"]
