"""TRPO as an RLlib Algorithm on the new API stack: its config and its training iteration.

Each iteration samples `total_train_batch_size` env steps on the env runners, hands the episodes to
the learner group for one TRPO update of the whole batch (`TRPOTorchLearner`: GAE, one natural-
gradient policy step under the KL bound, value-function regression) and syncs the new weights back
to the env runners. The RLModule is PPO's default (policy head and value function).
"""

from __future__ import annotations

from typing import Self

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)


class TRPOConfig(AlgorithmConfig):
    """TRPO's settings (the defaults below are the only ones) on top of RLlib's.

    `lr` is not used: the policy moves by the trust-region step, the value function by `vf_lr`.
    """

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or TRPO)
        self.train_batch_size_per_learner = 4000
        self.rollout_fragment_length = "auto"
        self.gamma: float = 0.99
        self.lambda_: float = 0.97  # GAE's λ
        self.kl_bound: float = 0.01  # δ in E[KL(π_old ‖ π_θ)] ≤ δ
        self.cg_iters: int = 10
        self.cg_damping: float = 0.1  # F + damping·I in the conjugate gradient
        self.line_search_steps: int = 10
        self.line_search_shrink: float = 0.5  # step fraction j is shrink^j
        self.vf_lr: float = 1e-3
        self.vf_epochs: int = 5
        self.vf_minibatch_size: int = 256

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        lambda_=NotProvided,
        kl_bound=NotProvided,
        cg_iters=NotProvided,
        cg_damping=NotProvided,
        line_search_steps=NotProvided,
        line_search_shrink=NotProvided,
        vf_lr=NotProvided,
        vf_epochs=NotProvided,
        vf_minibatch_size=NotProvided,
        **kwargs,
    ) -> Self:
        """TRPO's settings (see `__init__`), then RLlib's (`gamma`, `train_batch_size_per_learner`,
        `grad_clip` of the value step...)."""
        super().training(**kwargs)
        for key, value in locals().items():
            if key not in ("self", "kwargs", "__class__") and value is not NotProvided:
                setattr(self, key, value)
        return self

    @override(AlgorithmConfig)
    def validate(self) -> None:
        super().validate()
        if not (self.enable_rl_module_and_learner and self.enable_env_runner_and_connector_v2):
            self._value_error("TRPO runs on RLlib's new API stack only: use `api_stack()`.")
        self.validate_train_batch_size_vs_rollout_fragment_length()
        rules = {
            "kl_bound": (self.kl_bound > 0, "> 0"),
            "cg_iters": (self.cg_iters >= 1, ">= 1"),
            "cg_damping": (self.cg_damping >= 0, ">= 0"),
            "line_search_steps": (self.line_search_steps >= 1, ">= 1"),
            "line_search_shrink": (0 < self.line_search_shrink < 1, "in (0, 1)"),
            "lambda_": (0 <= self.lambda_ <= 1, "in [0, 1]"),
            "gamma": (0 < self.gamma <= 1, "in (0, 1]"),
            "vf_lr": (self.vf_lr > 0, "> 0"),
            "vf_epochs": (self.vf_epochs >= 1, ">= 1"),
            "vf_minibatch_size": (
                1 <= self.vf_minibatch_size <= self.train_batch_size_per_learner,
                "in [1, train_batch_size_per_learner]",
            ),
        }
        for key, (ok, bound) in rules.items():
            if not ok:
                self._value_error(f"TRPO: `{key}` must be {bound}, got {getattr(self, key)}.")

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict:
        return super()._model_config_auto_includes | {"vf_share_layers": False}

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
            DefaultPPOTorchRLModule,
        )

        return RLModuleSpec(module_class=DefaultPPOTorchRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self):
        from pipeline.learners.trpo.trpo_learner import TRPOTorchLearner

        return TRPOTorchLearner


class TRPO(Algorithm):
    """Sample a batch, one TRPO update on it, sync the weights to the env runners."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> TRPOConfig:
        return TRPOConfig()

    @override(Algorithm)
    def training_step(self) -> None:
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=self.config.total_train_batch_size,
                sample_timeout_s=self.config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        if not episodes:
            return
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)

        # No `num_epochs`/`minibatch_size`: each learner sees its whole shard once, in one step.
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
                    ),
                },
            )
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group, inference_only=True
            )
