"""MLflow tracking: every command that produces results logs a run (params, metrics, artifacts).

Where runs go, in order:
1. `MLFLOW_TRACKING_URI` when set (a tracking server such as http://mlflow:5000, or any URI
   MLflow accepts); an http(s) server that does not answer is an error before any work starts;
2. otherwise a local SQLite store `mlruns.db` in the working directory, artifacts under
   `mlartifacts/` beside it, so nothing has to be started (MLflow 3.17 refuses the old
   `./mlruns` file store unless told otherwise).

A command run inside another's run (as `ecomrl run` does with its stages) becomes a child run.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

EXPERIMENT = "ecomrl"
LOCAL_DB = "mlruns.db"
LOCAL_ARTIFACTS = "mlartifacts"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / LOCAL_DB}"


def check_server(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"MLflow tracking server {uri} does not answer ({exc})") from exc


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: MLflow params are flat."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _experiment_id(mlflow, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        location = (Path.cwd() / LOCAL_ARTIFACTS).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


@contextmanager
def run(
    name: str,
    params: Mapping[str, Any] | None = None,
    experiment: str = EXPERIMENT,
    run_id: str | None = None,
) -> Iterator:
    """An MLflow run (a child run when one is already active) with `params` logged; `run_id`
    continues that run instead of starting one."""
    import mlflow

    # MLflow and alembic announce store migrations at INFO on stderr: noise around our output.
    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    uri = tracking_uri()
    parent = mlflow.active_run()
    if parent is None:
        check_server(uri)
        mlflow.set_tracking_uri(uri)
        experiment_id = _experiment_id(mlflow, experiment)
    else:
        experiment_id = parent.info.experiment_id
    with mlflow.start_run(
        run_id=run_id,
        run_name=None if run_id else name,
        experiment_id=experiment_id,
        nested=parent is not None,
    ) as active:
        if params:
            mlflow.log_params(flatten(params))
        yield active


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log `metrics` to the active run, if any (library code also runs untracked, in tests and
    inside Tune trials); `step` places them on a training curve."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics(dict(metrics), step=step)


def log_json(data: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(data, indent=2, default=str), artifact_file)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path)


def log_artifacts(directory: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifacts(str(directory), artifact_path)
