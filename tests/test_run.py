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
    """The README's main command as a user runs it, on the quick profile: a fresh process and
    Ray, every stage a child run of one parent, every output an artifact, the report written."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    ecomrl = Path(sys.executable).parent / "ecomrl"
    work = tmp_path / "work"
    result = subprocess.run(
        [str(ecomrl), "run", "--profile", "quick", "--workdir", str(work), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trpo_anc" in result.stdout and "runs:/" in result.stdout

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=[tracking.EXPERIMENT])
    parent = runs[runs["tags.mlflow.runName"] == "pipeline"].iloc[0]
    assert parent["params.run.generate.sessions"] == "3000"  # the quick profile's
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    by_name = {row["tags.mlflow.runName"]: row for _, row in children.iterrows()}
    assert set(by_name) == {
        "generate", "ingest", "simulator-build", "train-trpo", "train-trpo-anc",
        "train-trpo-anc-bc", "baseline-sl1", "baseline-sl2", "evaluate",
    }  # fmt: skip
    ingest, generated = by_name["ingest"], by_name["generate"]
    assert ingest["metrics.rows_read"] == generated["metrics.page_views"]
    assert ingest["metrics.rows_quarantined"] == 0  # the world writes clean logs
    client = mlflow.MlflowClient()

    def artifacts(run, path=None) -> set[str]:
        return {Path(a.path).name for a in client.list_artifacts(run["run_id"], path)}

    assert "manifest.json" in artifacts(by_name["simulator-build"], "simulator")
    for name in ("train-trpo-anc", "baseline-sl1"):
        assert {"policy.pt", "policy.json"} <= artifacts(by_name[name], "policy")
    assert {"report.md", "evaluation.json"} <= artifacts(by_name["evaluate"], "report")
    assert "report.md" in artifacts(parent)
    report = (work / "report" / "report.md").read_text()
    assert "## The paper's claims, checked" in report and "Table 2" in report


def test_run_config_defaults_and_overrides(tmp_path):
    from pipeline.config import RunConfig, load_run_config

    # What `ecomrl run` passes when no option is given: the embedded defaults.
    assert load_run_config(None, {"workdir": None, "generate": {"sessions": None}}) == RunConfig()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"generate": {"days": 3}}))
    config = load_run_config(path, {"generate": {"sessions": 7}})
    assert (config.generate.days, config.generate.sessions) == (3, 7)
