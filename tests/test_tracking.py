"""MLflow tracking: local store by default, a real tracking server over HTTP when configured."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import factory
from pipeline import stages, tracking
from pipeline.config import IngestConfig
from pipeline.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on loopback with its own SQLite store and artifact root."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((tmp_path / "server.log").read_text()[-2000:]) from None
            time.sleep(0.5)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


def test_default_store_is_local_sqlite(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlruns.db'}"
    import mlflow

    with tracking.run("local-check", {"a": {"b": 1}}) as run:
        tracking.log_metrics({"m": 2.0})
        tracking.log_json({"x": 1}, "x.json")
    stored = mlflow.get_run(run.info.run_id)
    assert stored.data.params == {"a.b": "1"} and stored.data.metrics == {"m": 2.0}
    assert (tmp_path / "mlruns.db").is_file()
    assert list((tmp_path / "mlartifacts").rglob("x.json"))


def test_ingest_run_arrives_over_http(mlflow_server, monkeypatch, tmp_path, ray_session):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    factory.write(factory.page_views(50, seed=8), tmp_path / "logs")
    summary = stages.ingest(tmp_path / "logs", tmp_path / "out", IngestConfig(shards=2))

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "ingest" and run.info.status == "FINISHED"
    assert run.data.params["ingest.shards"] == "2"
    assert run.data.metrics["rows_accepted"] == summary.rows_accepted == 150
    local = client.download_artifacts(run.info.run_id, "ingest_summary.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["rows_read"] == 150


def test_unreachable_server_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UserError, match="does not answer"), tracking.run("never"):
        pass
