"""Issue 3 end to end: world logs -> ingest -> `ecomrl simulator build` -> `ecomrl simulator
evaluate` (every fidelity experiment) -> PPO driven through VirtualTaobao-v0 by the simulator,
loaded from its MLflow run."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline import tracking
from pipeline.config import IngestConfig
from pipeline.logs.ingest import ingest_logs

TINY_BUILD = {
    "density": {
        "gan_sd": {"steps": 60, "hidden": [32]},
        "gan": {"steps": 30, "hidden": [32]},
        "wgan": {"steps": 20, "hidden": [32]},
        "gmm": {"max_iter": 5},
    },
    "behaviour": {"epochs": 2, "min_steps": 0, "hidden": [32]},
    "mail": {
        "iterations": 2,
        "env_steps_per_iteration": 512,
        "num_envs_per_env_runner": 64,
        "minibatch_size": 256,
        "num_epochs": 1,
    },
}
TINY_FIDELITY = {
    "customers": 2000,
    "sessions": 300,
    "slice_simulator": {
        "baselines": False,
        "density": {"gan_sd": {"steps": 20, "hidden": [16]}},
        "behaviour": {"epochs": 1, "min_steps": 0, "hidden": [16]},
        "mail": {
            "iterations": 1,
            "env_steps_per_iteration": 128,
            "num_envs_per_env_runner": 32,
            "minibatch_size": 64,
            "num_epochs": 1,
        },
    },
}


def last_run_id(name: str) -> str:
    import mlflow

    runs = mlflow.search_runs(
        experiment_names=[tracking.EXPERIMENT],
        filter_string=f"attributes.run_name = '{name}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs.iloc[0]["run_id"]


@pytest.mark.slow
def test_world_logs_to_simulator_to_ppo(cli, tmp_path, ray_session):
    code, _, err = cli(
        "logs", "generate", "--out", tmp_path / "logs", "--sessions", "1500", "--no-progress"
    )
    assert code == 0, err
    ingest_logs(tmp_path / "logs", tmp_path / "traj", IngestConfig(shards=2), progress=False)
    (tmp_path / "build.yaml").write_text(yaml.safe_dump(TINY_BUILD))
    code, _, err = cli(
        "simulator",
        "build",
        tmp_path / "traj",
        "--out",
        tmp_path / "sim",
        "--config",
        tmp_path / "build.yaml",
        "--no-progress",
    )
    assert code == 0, err
    uri = f"runs:/{last_run_id('simulator-build')}/simulator"

    (tmp_path / "fidelity.yaml").write_text(yaml.safe_dump(TINY_FIDELITY))
    code, out, err = cli(
        "simulator",
        "evaluate",
        uri,
        "--logs",
        tmp_path / "traj",
        "--out",
        tmp_path / "report",
        "--config",
        tmp_path / "fidelity.yaml",
        "--no-progress",
    )
    assert code == 0, err
    assert "gan_sd" in out and "report.md" in out
    result = json.loads((tmp_path / "report" / "fidelity.json").read_text())
    assert set(result["kl"]) == {"gan_sd", "gmm", "gan", "wgan"}
    assert all(len(row) == 4 and min(row.values()) >= 0 for row in result["kl"].values())
    assert set(result["r2p"]) == {"logs", "mail", "bc"}
    assert 0 < result["r2p"]["logs"] < 1 and 0 <= result["r2p"]["mail"] <= 1
    slices = result["r2p_by_slice"]
    assert len(slices["logs"]) == 12 and sum(v is not None for v in slices["simulator"]) >= 10
    for name in ("report.md", "customer_distributions.png", "r2p_by_group.png", "r2p_by_slice.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "KL(generated || logs)" in report and "GAN-SD" in report

    import mlflow

    run = mlflow.get_run(last_run_id("simulator-evaluate"))
    assert "kl.gan_sd.purchase_power_level" in run.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert "report/report.md" in artifacts

    from ray.rllib.algorithms.ppo import PPOConfig

    import rllib_envs

    algo = (
        PPOConfig()
        .environment(rllib_envs.ENV_ID, env_config={"simulator": uri, "action_dim": 27})
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=64,
            gym_env_vectorize_mode="vector_entry_point",
        )
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=512, minibatch_size=256, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [32]})
        .build_algo()
    )
    try:
        result = algo.train()
    finally:
        algo.stop()
    runners = result["env_runners"]
    assert runners["num_episodes"] > 0 and 0 <= runners["episode_return_mean"] <= 1
