"""What one Tune trial runs: an RLlib Algorithm built by the project's own code, one
`algo.train()` per Tune step, checkpointed with the Algorithm's own `save_to_path`.

Each trial reports `env_steps` (the scheduler's clock, so learners with different iteration
sizes get the same sample budget) and the sweep's comparable metric:
- `sim_r2p` (search): the policy's R2P, the paper's offline measure ("Empirical Study"), in
  the simulator on a fixed set of its own customers, whatever reward or ANC shaped training;
- `bp` (rerank): the share of held-out requests whose generated list the causal evaluator
  scores above the logged order (pipeline/rerank/metrics.py), whatever the reward's weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ray import tune

from pipeline.learners.config import TrainConfig
from pipeline.learners.train import (
    build_algorithm,
    iteration_metrics,
    rllib_config,
    sampled_env_steps,
    training_config,
)
from pipeline.rerank.config import GeneratorTrainConfig


class _AlgorithmTrial(tune.Trainable):
    """Steps, checkpoints and stops `self.algo` (built by a subclass's `setup`)."""

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.save_to_path(checkpoint_dir)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.restore_from_path(checkpoint_dir)

    def cleanup(self) -> None:
        self.algo.stop()

    def reset_config(self, new_config: dict) -> bool:
        """Tune's `reuse_actors`: the next trial in this process, sparing a worker's start and
        imports (seconds per trial on 2 cores)."""
        self.algo.stop()
        self.setup(new_config)
        return True


class SearchTrial(_AlgorithmTrial):
    """config: {"train": TrainConfig fields, "simulator": str, "eval_customers": int}."""

    def setup(self, config: dict) -> None:
        from pipeline.simulator.checkpoint import load_simulator
        from pipeline.simulator.deploy import simulated_customers

        self.train = TrainConfig.model_validate(config["train"])
        self.algo, _ = build_algorithm(config["simulator"], self.train)
        self.simulator = load_simulator(config["simulator"])
        # The same customers for every trial and iteration: sim_r2p differences are the policy's.
        self.customers = simulated_customers(self.simulator, config["eval_customers"])

    def step(self) -> dict:
        result = self.algo.train()
        return {
            **iteration_metrics(result),
            "env_steps": sampled_env_steps(result),
            "sim_r2p": sim_r2p(self.algo.get_module(), self.simulator, self.train, self.customers),
        }


def sim_r2p(module, simulator, train: TrainConfig, customers: np.ndarray) -> float:
    """R2P of `module`'s policy in `simulator` (its `train.behaviour`) on `customers`."""
    from pipeline.export import policy_net
    from pipeline.simulator.deploy import simulate

    net = policy_net(module, module.action_space)

    def policy(obs: np.ndarray) -> np.ndarray:
        return net(torch.as_tensor(obs)).numpy()

    return float(simulate(simulator, train.behaviour, policy, customers).r2p.value)


class RerankTrial(_AlgorithmTrial):
    """config: {"run": GeneratorTrainConfig fields, "study": an `ecomrl rerank train` output}."""

    def setup(self, config: dict) -> None:
        from pipeline.rerank import train as rerank
        from pipeline.rerank.evaluator import EvaluatorKind, load_evaluator

        study = Path(config["study"])
        ingested, self.study = rerank.read_study(study)
        run = GeneratorTrainConfig.model_validate(config["run"])
        split = rerank.split_requests(ingested, self.study)
        self.probe = rerank.probe_requests(split, run)
        self.evaluator = load_evaluator(study / rerank.EVALUATORS_DIR, EvaluatorKind.CAUSAL)
        self.algo = rerank.rllib_config(ingested, study, run, self.study).build_algo()

    def step(self) -> dict:
        from pipeline.rerank.train import generator_metrics

        return generator_metrics(
            self.algo.train(), self.algo, self.evaluator, self.probe, self.study.k
        )


def search_resources(config: dict):
    """The trial's placement group: the Algorithm's own request (its driver, remote learners
    and env runners, GPUs per learner), so `num_learners: 2` reserves what the learners need."""
    train = TrainConfig.model_validate(config["train"])
    rllib = rllib_config(training_config(train), config["simulator"], train, mu=None)
    return rllib.algo_class.default_resource_request(rllib)


def rerank_resources(config: dict):
    from pipeline.rerank import train as rerank

    study = Path(config["study"])
    ingested, study_config = rerank.read_study(study)
    run = GeneratorTrainConfig.model_validate(config["run"])
    rllib = rerank.rllib_config(ingested, study, run, study_config)
    return rllib.algo_class.default_resource_request(rllib)
