"""The team setup: an MLflow tracking server on a PostgreSQL backend, artifacts served by it.

The project's own `tracking.run` logs a parent run with two children to a real `mlflow server`
(started here on loopback, on a throw-away PostgreSQL cluster); the runs are read back through
the server's API, straight from PostgreSQL, and in the MLflow UI in headless chromium
(screenshots kept under `test-artifacts/`, or `$ECOMRL_TEST_ARTIFACTS`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import psycopg2
import pytest
from servers import (
    artifacts_dir,
    assert_page_shows,
    chromium_driver,
    free_port,
    mlflow_server_url,
    postgres_url,
    psycopg2_dsn,
    tracking_to,
)

from pipeline import tracking
from pipeline.errors import UserError

__all__ = ["chromium_driver", "mlflow_server_url", "postgres_url"]  # fixtures used below

EXPERIMENT = "ecomrl-server-check"
PARENT, CHILDREN = "sweep-parent", ("trial-lr-small", "trial-lr-large")
CURVE = [0.5, 0.8, 1.1]  # episode_reward_mean per step; child i logs CURVE * (i + 1)


@pytest.fixture(scope="module")
def logged(mlflow_server_url, tmp_path_factory) -> dict:
    """A parent run with two nested children, logged by `tracking.run` over HTTP."""
    summary = tmp_path_factory.mktemp("summary") / "summary.txt"
    summary.write_text("best trial: trial-lr-large\n")
    children = []
    with (
        tracking_to(mlflow_server_url),
        tracking.run(PARENT, {"sweep": {"trials": 2}}, experiment=EXPERIMENT) as parent,
    ):
        for i, name in enumerate(CHILDREN):
            with tracking.run(name, {"lr": 10.0 ** -(3 - i), "model": {"hidden": 64}}) as run:
                for step, value in enumerate(CURVE):
                    tracking.log_metrics({"episode_reward_mean": value * (i + 1)}, step=step)
                tracking.log_json({"trial": name}, "trial.json")
            children.append(run.info.run_id)
        tracking.log_metrics({"best_reward": CURVE[-1] * 2})
        tracking.log_artifact(summary, "report")
    return {
        "experiment_id": parent.info.experiment_id,
        "parent": parent.info.run_id,
        "children": children,
    }


@pytest.mark.slow
def test_runs_come_back_through_the_server(mlflow_server_url, logged, tmp_path):
    client = mlflow.MlflowClient(mlflow_server_url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.experiment_id == logged["experiment_id"]
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # served by the server

    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {PARENT, *CHILDREN}
    parent = runs[PARENT]
    assert parent.info.status == "FINISHED" and parent.data.params == {"sweep.trials": "2"}
    assert parent.data.metrics == {"best_reward": CURVE[-1] * 2}
    for i, name in enumerate(CHILDREN):
        child = runs[name]
        assert child.info.run_id == logged["children"][i]
        assert child.data.tags["mlflow.parentRunId"] == logged["parent"]
        assert child.data.params == {"lr": str(10.0 ** -(3 - i)), "model.hidden": "64"}
        history = client.get_metric_history(child.info.run_id, "episode_reward_mean")
        assert [(m.step, m.value) for m in history] == [
            (step, value * (i + 1)) for step, value in enumerate(CURVE)
        ]
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["trial.json"]

    (folder,) = client.list_artifacts(logged["parent"])
    assert folder.path == "report" and folder.is_dir
    (listed,) = client.list_artifacts(logged["parent"], "report")
    assert listed.path == "report/summary.txt" and listed.file_size > 0
    local = client.download_artifacts(logged["parent"], "report/summary.txt", str(tmp_path))
    assert Path(local).read_text() == "best trial: trial-lr-large\n"
    trial = client.download_artifacts(logged["children"][1], "trial.json", str(tmp_path))
    assert json.loads(Path(trial).read_text()) == {"trial": CHILDREN[1]}


@pytest.mark.slow
def test_backend_store_is_postgresql(postgres_url, logged):
    """The rows are in PostgreSQL itself: the server did not fall back to another store."""
    with psycopg2.connect(psycopg2_dsn(postgres_url)) as connection, connection.cursor() as cur:
        cur.execute("SELECT name, status FROM runs WHERE experiment_id = %s ORDER BY name",
                    (int(logged["experiment_id"]),))  # fmt: skip
        assert cur.fetchall() == sorted((name, "FINISHED") for name in (PARENT, *CHILDREN))
        cur.execute(
            "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = %s ORDER BY step",
            (logged["children"][1], "episode_reward_mean"),
        )
        assert cur.fetchall() == [(step, value * 2) for step, value in enumerate(CURVE)]
        cur.execute(
            "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = %s",
            (logged["parent"],),
        )
        assert sorted(row[0] for row in cur.fetchall()) == sorted(logged["children"])
        cur.execute("SELECT version()")
        assert cur.fetchone()[0].startswith("PostgreSQL")


@pytest.mark.slow
def test_ui_shows_the_runs(mlflow_server_url, logged, chromium_driver):
    """The MLflow UI (a React app) renders the experiment's runs with their charts, the
    comparison of all three runs with their metrics, and a child run with its parent;
    the screenshots are kept for CI."""
    experiment_id, parent, children = logged["experiment_id"], logged["parent"], logged["children"]
    shots = artifacts_dir()
    # The runs list beside the metric charts, the children unfolded under their parent.
    assert_page_shows(
        chromium_driver,
        f"{mlflow_server_url}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART",
        [EXPERIMENT, PARENT, *CHILDREN, "3 matching runs", "episode_reward_mean", "best_reward"],
        shots / "mlflow-experiment-runs.png",
        expand_runs=True,
    )
    assert_page_shows(
        chromium_driver,
        f"{mlflow_server_url}/#/compare-runs?runs={json.dumps([parent, *children])}"
        f"&experiments={json.dumps([experiment_id])}",
        ["Comparing 3 Runs", PARENT, *CHILDREN, "episode_reward_mean", "best_reward"],
        shots / "mlflow-compare-runs.png",
        scroll_to="Run details",
    )
    assert_page_shows(
        chromium_driver,
        f"{mlflow_server_url}/#/experiments/{experiment_id}/runs/{children[1]}",
        [CHILDREN[1], "episode_reward_mean", "Parent run", PARENT, "model.hidden"],
        shots / "mlflow-child-run.png",
    )


def test_server_that_does_not_answer_is_a_user_error():
    uri = f"http://127.0.0.1:{free_port()}"
    body_ran = False
    with (
        tracking_to(uri),
        pytest.raises(UserError, match=re.escape(f"{uri} does not answer")),
        tracking.run("never"),
    ):
        body_ran = True
    assert not body_ran and mlflow.active_run() is None
