"""`ecomrl rerank train|evaluate`: bad input ends in one clear line; the quick study runs end to
end from world logs to the report, tracked in MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from rerank_data import make_rerank_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_rerank_data(tmp_path_factory.mktemp("rerank"), sessions=2000)


def test_rerank_train_bad_input(cli, data, tmp_path):
    code, _, err = cli("rerank", "train", data.requests, "--out", tmp_path / "a", "--runs", "nope")
    assert code == 2 and "unknown run(s) ['nope']" in err
    code, _, err = cli("rerank", "train", tmp_path / "missing", "--out", tmp_path / "b")
    assert code == 2 and "no validated re-ranking requests" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"runs": {"x": {"learner": "sarsa"}}}))
    code, _, err = cli("rerank", "train", data.requests, "--out", tmp_path / "c", "--config", bad)
    assert code == 2 and "runs.x" in err and "learner" in err
    bad.write_text(yaml.safe_dump({"defaults": {"group_size": 1}}))
    code, _, err = cli("rerank", "train", data.requests, "--out", tmp_path / "d", "--config", bad)
    assert code == 2 and "group_size" in err
    code, _, err = cli("rerank", "evaluate", tmp_path)
    assert code == 2 and "no re-ranking study here" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
    """generate -> ingest -> rerank train --profile quick -> rerank evaluate, in fresh
    processes as a user runs them."""
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}

    def ecomrl(*args) -> str:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ecomrl"), *map(str, args)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    ecomrl("logs", "generate", "--out", tmp_path / "logs", "--sessions", 3000, "--no-progress")
    ecomrl("logs", "ingest", tmp_path / "logs", "--out", tmp_path / "ing", "--no-progress")
    ecomrl("rerank", "train", tmp_path / "ing", "--out", tmp_path / "study", "--profile", "quick",
           "--no-progress")  # fmt: skip
    printed = ecomrl("rerank", "evaluate", tmp_path / "study")
    assert "ppo_mc n=30" in printed
    report = (tmp_path / "study" / "report" / "report.md").read_text()
    for section in ("Evaluators", "Every run", "Generalisation", "PAY vs GMV", "GAIL", "Targets"):
        assert section in report
    result = json.loads((tmp_path / "study" / "report" / "evaluation.json").read_text())
    assert set(result["runs"]) == {
        "reinforce", "reinforce_logged", "reinforce_logged_rate", "ppo", "ppo_mc", "gail",
        "ppo_mc_n17", "ppo_mc_gmv", "ppo_mc_pay_gmv",
    }  # fmt: skip
    for name in ("entropy.png", "bp.png", "discriminator_auc.png"):
        assert (tmp_path / "study" / "report" / name).stat().st_size > 0
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    names = {run.info.run_name for run in runs}
    assert {"rerank-train", "rerank-evaluators", "rerank-gail", "rerank-evaluate"} <= names
    gail = next(run for run in runs if run.info.run_name == "rerank-gail")
    assert "discriminator_auc" in gail.data.metrics
    evaluate = next(run for run in runs if run.info.run_name == "rerank-evaluate")
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(evaluate.info.run_id, "report")
    }
    assert "report/report.md" in artifacts and "report/bp.png" in artifacts
