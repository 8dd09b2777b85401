"""RLlib / gymnasium environments: `VirtualTaobao-v0` (the learned simulator) and `ReRank-v0`
(list generation scored by a learned evaluator).

`import rllib_envs` registers both with Ray Tune's registry (what
`config.environment("VirtualTaobao-v0", env_config=...)` looks up) and with gymnasium
(`gym.make` / `gym.make_vec`). The environment classes (torch, the simulator, the evaluator) are
imported only when an environment is built.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

ENV_ID = "VirtualTaobao-v0"
RERANK_ENV_ID = "ReRank-v0"
# id -> (module, single env class, vector env class)
_ENVS = {
    ENV_ID: ("rllib_envs.virtual_taobao", "VirtualTaobaoEnv", "VirtualTaobaoVectorEnv"),
    RERANK_ENV_ID: ("rllib_envs.rerank", "ReRankEnv", "ReRankVectorEnv"),
}


def _create(env_id: str, config: Mapping[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """RLlib's env creator: it adds `num_envs` when it wants a vector env
    (`gym_env_vectorize_mode="vector_entry_point"`)."""
    module, single, vector = _ENVS[env_id]
    classes = importlib.import_module(module)
    return getattr(classes, vector if "num_envs" in config else single)(config)


def register() -> None:
    """Register every env with Ray Tune and gymnasium; calling it again changes nothing."""
    from ray.tune.registry import register_env

    for env_id, (module, single, vector) in _ENVS.items():
        register_env(env_id, functools.partial(_create, env_id))
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=f"{module}:{single}",
                vector_entry_point=f"{module}:{vector}",
            )


register()
