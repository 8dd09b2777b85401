"""`ecomrl train`, `ecomrl baseline` and `ecomrl evaluate` on a random simulator: every learner
by name, under ANC, exported, scored in the simulator and in the world; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from learner_settings import TINY
from simulator_factory import random_simulator

from pipeline.export.loader import load_policy


@pytest.fixture(scope="module")
def simulator(tmp_path_factory) -> Path:
    return random_simulator(tmp_path_factory.mktemp("sim") / "simulator")


def tiny_config(path: Path, algo: str, **extra) -> Path:
    config = {
        "algo": algo,
        "env_steps": 256,
        "num_envs_per_env_runner": 16,
        "hidden": [16],
        "initial_action_std": 0.1,
        "settings": TINY[algo],
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("algo", ["ppo", "trpo", "ddpg"])
def test_every_learner_trains_by_name_and_exports(cli, ray_session, simulator, tmp_path, algo):
    config = tiny_config(tmp_path / "train.yaml", algo)
    out = tmp_path / "out"
    code, stdout, err = cli(
        "train", simulator, "--out", out, "--config", config, "--anc-mu", "0.5", "--no-progress"
    )
    assert code == 0, err
    assert "runs:/" in stdout
    signature = json.loads((out / "policy" / "policy.json").read_text())
    assert signature["metadata"]["algo"] == algo
    assert signature["metadata"]["anc"] == {"rho": 1.0, "mu": 0.5}
    policy = load_policy(out / "policy")
    actions = policy(np.zeros((5, 104), np.float32))
    assert actions.shape == (5, 27) and np.all(np.abs(actions) <= 1)
    assert (out / "checkpoint" / "rllib_checkpoint.json").is_file()


def test_train_settings_and_anc_errors(cli, simulator, tmp_path):
    bad = tiny_config(tmp_path / "bad.yaml", "ppo", settings={"no_such_setting": 1})
    code, _, err = cli("train", simulator, "--out", tmp_path / "a", "--config", bad)
    assert code == 2 and "no_such_setting" in err
    # The random simulator's manifest has no logged action norms to default mu to.
    config = tiny_config(tmp_path / "ok.yaml", "ppo")
    code, _, err = cli("train", simulator, "--out", tmp_path / "b", "--config", config)
    assert code == 2 and "logged_action_norm.p90" in err and "anc.mu" in err
    code, _, err = cli("train", simulator, "--out", tmp_path / "c", "--algo", "a2c")
    assert code == 2 and "a2c" in err
    # Nor has it the logged norms the Gaussian's starting std defaults to.
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()),
                                      "initial_action_std": None}))  # fmt: skip
    code, _, err = cli("train", simulator, "--out", tmp_path / "d", "--config", config,
                       "--anc-mu", "0.5")  # fmt: skip
    assert code == 2 and "logged_action_norm.p50" in err and "initial_action_std" in err


class _Scaled(torch.nn.Module):
    """A fixed policy: tanh of a scaled slice of the observation."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.scale * obs[:, :27])


def test_evaluate_scores_every_policy_in_world_and_simulator(cli, simulator, tmp_path):
    from pipeline.export import export_policy

    for name, scale in (("small", 0.01), ("large", 3.0)):
        export_policy(_Scaled(scale), tmp_path / name, 104, 27, {"algo": name})
    names = {"trpo": "large", "trpo_anc": "small", "trpo_anc_bc": "large", "sl1": "small",
             "sl2": "large"}  # fmt: skip
    policies = [arg for n, p in names.items() for arg in ("--policy", f"{n}={tmp_path / p}")]
    out = tmp_path / "report"
    code, stdout, err = cli(
        "evaluate", simulator, *policies, "--out", out, "--customers", "300", "--no-progress"
    )
    assert code == 0, err
    assert "trpo_anc" in stdout
    evaluation = json.loads((out / "evaluation.json").read_text())
    result = evaluation["policies"]
    assert set(result) == {"random", *names}
    assert len(evaluation["claims"]) == 5
    for score in result.values():
        assert set(score["world"]) == {"0", "1", "7", "30"}
        assert set(score["simulator"]) == {"mail", "bc"}
        day0 = score["world"]["0"]
        assert day0["r2p_ci_low"] <= day0["r2p"] <= day0["r2p_ci_high"]
    # Policies that are the same file score the same: the same customers, the same draws.
    assert result["trpo"]["world"]["7"] == result["sl2"]["world"]["7"]
    assert result["trpo_anc"]["simulator"] == result["sl1"]["simulator"]
    report = (out / "report.md").read_text()
    for section in ("ANC: TRPO vs TRPO-ANC", "RL + simulator vs supervised", "Generalisation"):
        assert section in report
    assert report.count("**holds**") + report.count("**does not hold**") == 5
    assert {p.name for p in out.glob("*.png")} == {"r2p_by_policy.png", "generalisation.png"}

    code, _, err = cli("evaluate", simulator, "--policy", "trpo", "--out", tmp_path / "x")
    assert code == 2 and "NAME=PATH" in err
