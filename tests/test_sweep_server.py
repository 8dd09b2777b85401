"""A sweep as a team runs it: `ecomrl sweep` against an MLflow tracking server on PostgreSQL
(both started here on loopback). The trials come back through the server's API and straight
from PostgreSQL, the best model is in the server's Model Registry, and the MLflow UI in
headless chromium shows the trials and their compared metric (screenshots in test-artifacts/).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import psycopg2
import pytest
from servers import (
    artifacts_dir,
    assert_page_shows,
    chromium_driver,
    mlflow_server_url,
    postgres_url,
    psycopg2_dsn,
    tracking_to,
)
from simulator_factory import random_simulator
from sweep_factory import child_runs, parent_run, tiny_sweep

from pipeline.simulator.checkpoint import load_simulator

__all__ = ["chromium_driver", "mlflow_server_url", "postgres_url"]  # fixtures used below

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def swept(mlflow_server_url, ray_session, tmp_path_factory) -> dict:
    """The tiny sweep, tracked by the server; what it logged, read back through the API."""
    from pipeline.cli import main

    root = tmp_path_factory.mktemp("team-sweep")
    simulator = random_simulator(root / "simulator")
    config = tiny_sweep(root / "sweep.yaml", simulator, name="team")
    argv = ["sweep", str(config), "--storage", str(root / "sweeps"), "--no-progress"]
    with tracking_to(mlflow_server_url), pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["ecomrl", *argv])
        with pytest.raises(SystemExit) as finished:
            main()
    assert finished.value.code == 0
    client = mlflow.MlflowClient(mlflow_server_url)
    parent = parent_run(client, "sweep-team")
    return {
        "client": client,
        "simulator": simulator,
        "parent": parent,
        "trials": child_runs(client, parent.info.run_id),
    }


def test_trials_come_back_through_the_server(swept):
    client, parent, trials = swept["client"], swept["parent"], swept["trials"]
    assert parent.data.metrics["trials"] == 2 and len(trials) == 2
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert len(client.get_metric_history(trial.info.run_id, "sim_r2p")) == 4
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "curves.png",
        "trials.csv",
        "best_trial.json",
    }
    version = client.get_model_version("ecomrl-team", "1")
    assert version.tags["simulator_version"] == load_simulator(swept["simulator"]).version
    assert version.run_id in {t.info.run_id for t in trials}


def test_the_backend_store_is_postgresql(swept, postgres_url):
    parent_id = swept["parent"].info.run_id
    with psycopg2.connect(psycopg2_dsn(postgres_url)) as connection, connection.cursor() as cur:
        cur.execute(
            "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = %s",
            (parent_id,),
        )
        assert sorted(r[0] for r in cur.fetchall()) == sorted(
            t.info.run_id for t in swept["trials"]
        )
        cur.execute(
            "SELECT count(*) FROM metrics WHERE key = 'sim_r2p' AND run_uuid = ANY(%s)",
            ([t.info.run_id for t in swept["trials"]],),
        )
        assert cur.fetchone()[0] == 8
        cur.execute(
            "SELECT value FROM model_version_tags WHERE name = 'ecomrl-team' AND key = %s",
            ("simulator_version",),
        )
        assert cur.fetchall() == [(load_simulator(swept["simulator"]).version,)]


def show_chart(driver, metric: str, screenshot: Path, timeout: float = 60) -> str:
    """Type `metric` into the runs page's chart search box; wait until its chart is drawn
    (its title and legend are on the page) and save a screenshot. Returns the page text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout, poll_frequency=0.5)
    box = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, "input[placeholder='Search metric charts']")
    )
    box.send_keys(metric)

    def drawn(d) -> str | None:
        text = d.find_element(By.TAG_NAME, "body").text
        return text if f"({metric})" in text else None  # the legend: "run name (metric)"

    text = wait.until(drawn)
    driver.save_screenshot(str(screenshot))
    return text


def test_the_ui_shows_the_trials_and_their_metric(swept, mlflow_server_url, chromium_driver):
    parent, trials = swept["parent"], swept["trials"]
    experiment = parent.info.experiment_id
    names = [t.info.run_name for t in trials]
    shots = artifacts_dir()
    assert_page_shows(
        chromium_driver,
        f"{mlflow_server_url}/#/experiments/{experiment}/runs?compareRunsMode=CHART",
        ["sweep-team", "team", *names, "3 matching runs"],
        shots / "sweep-experiment.png",
        expand_runs=True,
    )
    # As a user would: the chart of the sweep's metric, found with the charts' search box.
    charts = show_chart(chromium_driver, "sim_r2p", shots / "sweep-sim_r2p-chart.png")
    assert all(name in charts for name in names)
    run_ids = [t.info.run_id for t in trials]
    assert_page_shows(
        chromium_driver,
        f"{mlflow_server_url}/#/compare-runs?runs={json.dumps(run_ids)}"
        f"&experiments={json.dumps([experiment])}",
        ["Comparing 2 Runs", *names, "train/anc/rho", "env_steps"],
        shots / "sweep-compare-trials.png",
        scroll_to="Run details",
    )
    assert Path(shots / "sweep-compare-trials.png").stat().st_size > 0
