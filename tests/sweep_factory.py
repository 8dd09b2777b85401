"""A tiny search sweep file over a simulator, for the sweep tests (seconds per trial)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import yaml
from learner_settings import TINY

# One PPO iteration = 128 env steps: a trial of budget 512 reports 4 times.
TINY_BASE = {
    "algo": "ppo",
    "anc": {"mu": 0.5},
    "num_envs_per_env_runner": 16,
    "hidden": [16],
    "initial_action_std": 0.1,
    "settings": TINY["ppo"],
}


def tiny_sweep(path: Path, sim: Path, **changes) -> Path:
    """Write a sweep file of rho in {0, 1} over `sim` to `path`, updated by `changes`."""
    config = {
        "name": "tiny",
        "kind": "search",
        "simulator": str(sim),
        "base": TINY_BASE,
        "space": {"anc.rho": {"grid": [0.0, 1.0]}},
        "budget": 512,
        "eval_customers": 200,
        "checkpoint_every": 2,
        "scheduler": {"kind": "asha", "grace_period": 256},
        **changes,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def child_runs(client: mlflow.MlflowClient, parent_id: str) -> list:
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )


def parent_run(client: mlflow.MlflowClient, experiment: str):
    runs = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        filter_string="tags.mlflow.parentRunId IS NULL",
    )
    assert len(runs) == 1
    return runs[0]
