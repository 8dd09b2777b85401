"""PPO-MC and the REINFORCE variants for list generation (seed: rl-rerank-generator-evaluator):
`PPOMCConfig`/`PPOMC` (ppo_mc.py) over the list advantages of advantages.py, and the GAIL
variant `RerankGAILConfig`/`RerankGAIL` (gail.py)."""

from pipeline.learners.ppo_mc.advantages import Baseline, ListAdvantages
from pipeline.learners.ppo_mc.gail import RerankGAIL, RerankGAILConfig
from pipeline.learners.ppo_mc.ppo_mc import PPOMC, PPOMCConfig, PPOMCTorchLearner

__all__ = [
    "PPOMC",
    "Baseline",
    "ListAdvantages",
    "PPOMCConfig",
    "PPOMCTorchLearner",
    "RerankGAIL",
    "RerankGAILConfig",
]
