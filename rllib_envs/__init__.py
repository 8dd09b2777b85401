"""RLlib / gymnasium environments backed by a learned simulator.

`import rllib_envs` registers `VirtualTaobao-v0` with Ray Tune's registry (what
`config.environment("VirtualTaobao-v0", env_config=...)` looks up) and with gymnasium
(`gym.make` / `gym.make_vec`). The environment classes (torch, the simulator) are imported
only when an environment is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

ENV_ID = "VirtualTaobao-v0"
_MODULE = "rllib_envs.virtual_taobao"


def _create(config: Mapping[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """RLlib's env creator: it adds `num_envs` when it wants a vector env
    (`gym_env_vectorize_mode="vector_entry_point"`)."""
    from rllib_envs.virtual_taobao import VirtualTaobaoEnv, VirtualTaobaoVectorEnv

    if "num_envs" in config:
        return VirtualTaobaoVectorEnv(config)
    return VirtualTaobaoEnv(config)


def register() -> None:
    """Register `ENV_ID` with Ray Tune and gymnasium; calling it again changes nothing."""
    from ray.tune.registry import register_env

    register_env(ENV_ID, _create)
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point=f"{_MODULE}:VirtualTaobaoEnv",
            vector_entry_point=f"{_MODULE}:VirtualTaobaoVectorEnv",
        )


register()
