"""`ecomrl logs generate` and `ecomrl run` from the command line, tracked in MLflow."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import tracking


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_generate_is_deterministic_and_tracked(cli, tmp_path, mlflow_store):
    args = ("--sessions", "300", "--days", "2", "--seed", "5", "--no-progress")
    code, out, err = cli("logs", "generate", "--out", tmp_path / "a", *args)
    assert code == 0, err
    assert "page_views" in out
    cli("logs", "generate", "--out", tmp_path / "b", *args)
    files = digest(tmp_path / "a")
    assert files == digest(tmp_path / "b")
    assert {Path(f).parts[1] for f in files} == {"date=2026-01-01", "date=2026-01-02"}

    code, _, err = cli("logs", "generate", "--out", tmp_path / "a", "--sessions", "10")
    assert code == 2 and "--overwrite" in err

    import mlflow

    runs = mlflow.search_runs(
        experiment_names=[tracking.EXPERIMENT], filter_string="attributes.run_name = 'generate'"
    )
    assert len(runs) >= 2 and (runs["metrics.page_views"] > 300).all()


def test_run_config_file_is_validated(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"generate": {"sesions": 10}}))
    code, _, err = cli("run", "--config", bad)
    assert code == 2 and "generate.sesions" in err


@pytest.mark.slow
def test_ecomrl_run_end_to_end(tmp_path):
    """The README's main command as a user runs it: embedded defaults, a fresh process and Ray."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    ecomrl = Path(sys.executable).parent / "ecomrl"
    result = subprocess.run(
        [str(ecomrl), "run", "--workdir", str(tmp_path / "work"), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows_quarantined" in result.stdout

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=[tracking.EXPERIMENT])
    parent = runs[runs["tags.mlflow.runName"] == "pipeline"].iloc[0]
    assert parent["params.run.generate.sessions"] == "20000"
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert set(children["tags.mlflow.runName"]) == {"generate", "ingest"}
    ingest = children[children["tags.mlflow.runName"] == "ingest"].iloc[0]
    generated = children[children["tags.mlflow.runName"] == "generate"].iloc[0]
    assert ingest["metrics.rows_read"] == generated["metrics.page_views"]
    accepted, quarantined = ingest["metrics.rows_accepted"], ingest["metrics.rows_quarantined"]
    assert ingest["metrics.rows_read"] == accepted + quarantined
    assert quarantined == 0  # the world writes clean logs
    assert (tmp_path / "work/trajectories/engine_transitions").is_dir()


def test_run_config_defaults_and_overrides(tmp_path):
    from pipeline.config import RunConfig, load_run_config

    # What `ecomrl run` passes when no option is given: the embedded defaults.
    assert load_run_config(None, {"workdir": None, "generate": {"sessions": None}}) == RunConfig()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"generate": {"days": 3}}))
    config = load_run_config(path, {"generate": {"sessions": 7}})
    assert (config.generate.days, config.generate.sessions) == (3, 7)
