"""Simulator checkpoints with randomly initialised networks, for environment tests and benchmarks.

Networks are sized by the `SimulatorConfig` defaults, so a random checkpoint costs what a built
one costs per forward pass; only what the weights say is meaningless. The benchmark
(benchmarks/env_throughput.py) imports this module too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.logs.observation import observation_dim
from pipeline.logs.schema import CustomerAction, LogSpec
from pipeline.simulator.checkpoint import Manifest, write_checkpoint
from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.customers import CustomerCodec
from pipeline.simulator.data import DECISIONS
from pipeline.simulator.networks import (
    AmountNet,
    CustomerGenerator,
    CustomerPolicyNet,
    EnginePolicyNet,
)

DEFAULT_SPEC = LogSpec()
# Beats any Gumbel noise (< 21) plus the clicks embedding: the decision is then certain.
_CERTAIN_LOGIT = 1e3


def _networks(spec: LogSpec, codec: CustomerCodec) -> dict[str, torch.nn.Module]:
    config = SimulatorConfig()
    obs_dim, hidden = observation_dim(spec), config.behaviour.hidden
    gan = config.density.gan_sd
    return {
        "customer_generator": CustomerGenerator(
            gan.noise_dim, codec.group_sizes, codec.dense_dim, gan.hidden
        ),
        "customer_policy": CustomerPolicyNet(obs_dim, spec.action_dim, spec.page_size, hidden),
        "bc_customer_policy": CustomerPolicyNet(obs_dim, spec.action_dim, spec.page_size, hidden),
        "engine_policy": EnginePolicyNet(obs_dim, spec.action_dim, hidden),
        "amount": AmountNet(obs_dim, spec.action_dim, config.amount_hidden),
    }


def _force_decision(policy: CustomerPolicyNet, decision: CustomerAction) -> None:
    with torch.no_grad():
        policy.decision_head.bias[DECISIONS.index(decision.value)] = _CERTAIN_LOGIT


def random_simulator(
    root: Path,
    spec: LogSpec = DEFAULT_SPEC,
    *,
    decision: CustomerAction | None = None,
    seed: int = 0,
    **overrides,
) -> Path:
    """Write a checkpoint of random networks to `root` and return `root`.

    `decision` makes both customer policies always take that decision (termination tests);
    `overrides` replace manifest fields (e.g. `schema_version="0"` for a mismatch test).
    """
    codec = CustomerCodec(
        group_sizes=(*spec.attr_cardinalities, spec.n_query_categories),
        dense_mean=(0.0,) * spec.dense_dim,
        dense_std=(1.0,) * spec.dense_dim,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        modules = _networks(spec, codec)
    if decision is not None:
        _force_decision(modules["customer_policy"], decision)
        _force_decision(modules["bc_customer_policy"], decision)
    fields = {
        "spec": spec,
        "scenario": spec.scenarios[0],
        "time_slice": None,
        "observation_dim": observation_dim(spec),
        "action_dim": spec.action_dim,
        "codec": codec.to_json(),
        "data_fingerprint": "random",
        "data_root": "none",
        "config": {},
    }
    root.mkdir(parents=True, exist_ok=True)
    write_checkpoint(root, Manifest(**(fields | overrides)), modules)
    return root
