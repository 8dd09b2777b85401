"""`ecomrl sweep`: bad sweep files fail before Ray starts; tiny search and re-ranking sweeps run
under Tune with each trial an MLflow run nested under the sweep's run, the best trial's model
registered with its simulator's version; an interrupted sweep resumes into the same runs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from simulator_factory import random_simulator
from sweep_factory import TINY_BASE, child_runs, parent_run, tiny_sweep

from pipeline.errors import UserError
from pipeline.simulator.checkpoint import load_simulator
from pipeline.sweep.config import load_sweep

BUNDLED = ["anc", "rewards", "rerank_rewards", "learners", "lr_optuna"]


@pytest.fixture(scope="module")
def simulator(tmp_path_factory) -> Path:
    return random_simulator(tmp_path_factory.mktemp("sim") / "simulator")


def test_the_anc_sweep_scales_mu_by_the_logged_action_norm(tmp_path):
    """The bundled ANC sweep resolves on a simulator whose manifest has the logged action
    norms: rho as given, mu the grid's multiples of their p90; without it, a clear error."""
    from pipeline.learners.anc import LOGGED_NORM_METRIC
    from pipeline.learners.train import LOGGED_MEDIAN_NORM_METRIC
    from pipeline.sweep.tuner import prepare

    metrics = {LOGGED_NORM_METRIC: 0.8, LOGGED_MEDIAN_NORM_METRIC: 0.5}
    sim = random_simulator(tmp_path / "sim", metrics=metrics)
    prepared = prepare(load_sweep(Path("anc"), {"simulator": str(sim)}))
    anc = prepared.param_space["train"]["anc"]
    assert anc["rho"] == {"grid_search": [0, 0.5, 1, 2]}
    assert anc["mu"] == {"grid_search": pytest.approx([0.4, 0.8, 1.2, 1.6])}
    assert prepared.param_space["train"]["algo"] == "trpo"
    assert prepared.tags["simulator_version"] == load_simulator(sim).version

    bare = random_simulator(tmp_path / "bare")  # no logged norms in its manifest
    with pytest.raises(UserError, match=f"the manifest has no {LOGGED_NORM_METRIC}"):
        prepare(load_sweep(Path("anc"), {"simulator": str(bare)}))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_sweeps_validate(name):
    config = load_sweep(Path(name), {"simulator": "sim", "study": "study"})
    assert config.space and config.objective in ("sim_r2p", "bp")


BAD = [
    ({"nmae": "x"}, "nmae: Extra inputs are not permitted"),
    ({"base": {**TINY_BASE, "algoo": "ppo"}}, "base: algoo: Extra inputs"),
    ({"space": {"anc.rhoo": {"grid": [1]}}}, "space.anc.rhoo: anc.rhoo: Extra inputs"),
    ({"space": {"anc.rho": {"uniform": [1.0, 0.5]}}}, "empty range: low 1.0 must be below"),
    ({"space": {"anc.rho": {"grid": [0, -1]}}}, "space.anc.rho: anc.rho: Input should be"),
    ({"space": {"anc.rho": {"grid": [0], "uniform": [0, 1]}}}, "exactly one of grid"),
    ({"space": {"algo": {"grid": ["ppo", "sarsa"]}}}, "space.algo: algo: Input should be 'ppo'"),
    ({"space": {"settings.lrr": {"choice": [0.1]}}}, "settings for ppo"),
    ({"search": "optuna"}, "optuna samples, it does not enumerate grids: anc.rho"),
    ({"simulator": None}, "a search sweep needs `simulator`"),
    ({"simulator": "/nowhere"}, "/nowhere: not a simulator checkpoint"),
    ({"budget": 0}, "budget: Input should be greater than or equal to 1"),
    ({"budget": 128}, "scheduler.grace_period 256 exceeds the budget"),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_bad_sweep_files_fail_before_ray(cli, simulator, tmp_path, changes, message):
    config = tiny_sweep(tmp_path / "sweep.yaml", simulator, **changes)
    code, _, err = cli("sweep", config, "--storage", tmp_path / "sweeps")
    assert code == 2 and message in err, err
    assert not (tmp_path / "sweeps").exists()  # nothing started


def test_sweep_cli_errors(cli, simulator, tmp_path, monkeypatch):
    config = tiny_sweep(tmp_path / "sweep.yaml", simulator)
    code, _, err = cli("sweep", "no_such_sweep")
    assert code == 2 and "no such sweep file, nor a bundled sweep (anc, learners" in err
    code, _, err = cli("sweep", config, "--storage", tmp_path / "sweeps", "--resume")
    assert code == 2 and "no interrupted sweep to resume here" in err
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    code, _, err = cli("sweep", config, "--storage", tmp_path / "sweeps")
    assert code == 2 and f"http://127.0.0.1:{port} does not answer" in err
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.slow
def test_search_sweep_nests_trials_and_registers_the_best(
    cli, ray_session, simulator, tmp_path, mlflow_store
):
    config = tiny_sweep(tmp_path / "sweep.yaml", simulator)
    storage = tmp_path / "sweeps"
    code, out, err = cli("sweep", config, "--storage", storage, "--no-progress")
    assert code == 0, err
    assert "models:/ecomrl-tiny/1" in out

    client = mlflow.MlflowClient(mlflow_store)
    parent = parent_run(client, "sweep-tiny")
    children = child_runs(client, parent.info.run_id)
    assert len(children) == 2
    assert {c.data.params["train/anc/rho"] for c in children} == {"0.0", "1.0"}
    for child in children:
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "sim_r2p")
        assert len(history) == 4 and all(0 <= m.value <= 1 for m in history)
    assert parent.data.metrics["trials"] == 2
    best = max(c.data.metrics["sim_r2p"] for c in children)
    assert parent.data.metrics["best.sim_r2p"] == best

    version = client.get_model_version("ecomrl-tiny", "1")  # a best trial's (ties: any)
    assert version.run_id in {c.info.run_id for c in children if c.data.metrics["sim_r2p"] == best}
    assert version.tags["simulator_version"] == load_simulator(simulator).version
    assert version.tags["simulator"] == str(simulator)
    model = mlflow.pyfunc.load_model("models:/ecomrl-tiny/1")
    actions = model.predict(np.zeros((3, 104), np.float32))
    assert actions.shape == (3, 27) and np.all(np.abs(actions) <= 1)

    directory = storage / "tiny"
    assert (directory / "curves.png").stat().st_size > 0
    assert len((directory / "trials.csv").read_text().splitlines()) == 3
    code, _, err = cli("sweep", config, "--storage", storage)  # never overwrites a sweep
    assert code == 2 and "a sweep named 'tiny' is there; continue it with --resume" in err


@pytest.mark.slow
def test_optuna_sweep_samples_the_space(cli, ray_session, simulator, tmp_path, mlflow_store):
    space = {"settings.lr": {"loguniform": [1e-5, 1e-3]}}
    config = tiny_sweep(
        tmp_path / "sweep.yaml",
        simulator,
        name="optuna",
        space=space,
        search="optuna",
        num_samples=2,
        budget=256,
        register_best=False,
    )
    code, out, err = cli("sweep", config, "--storage", tmp_path / "sweeps", "--no-progress")
    assert code == 0, err
    assert "not registered" in out
    client = mlflow.MlflowClient(mlflow_store)
    children = child_runs(client, parent_run(client, "sweep-optuna").info.run_id)
    rates = {float(c.data.params["train/settings/lr"]) for c in children}
    assert len(rates) == 2 and all(1e-5 <= r <= 1e-3 for r in rates)


@pytest.mark.slow
def test_rerank_sweep_registers_the_generator(cli, ray_session, tmp_path, mlflow_store):
    from rerank_data import make_rerank_data

    from pipeline.rerank.config import RerankConfig
    from pipeline.rerank.requests import load_requests
    from pipeline.rerank.train import EVALUATORS_DIR, write_study

    data = make_rerank_data(tmp_path / "data", sessions=1500)
    study = tmp_path / "study"
    shutil.copytree(data.evaluators, study / EVALUATORS_DIR)
    write_study(study, data.requests, RerankConfig())
    config = {
        "name": "gmv",
        "kind": "rerank",
        "study": str(study),
        "base": {"reward": "pay_gmv", "num_envs": 16, "minibatch_size": 128, "eval_requests": 50},
        "space": {"gmv_weight": {"grid": [0.0, 1.0]}},
        "budget": 2 * 16 * 17,
        "scheduler": {"kind": "fifo"},
    }
    path = tmp_path / "gmv.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = cli("sweep", path, "--storage", tmp_path / "sweeps", "--no-progress")
    assert code == 0, err
    assert "models:/ecomrl-gmv/1" in out
    client = mlflow.MlflowClient(mlflow_store)
    children = child_runs(client, parent_run(client, "sweep-gmv").info.run_id)
    assert {c.data.params["run/gmv_weight"] for c in children} == {"0.0", "1.0"}
    assert all(0 <= c.data.metrics["bp"] <= 1 for c in children)
    version = client.get_model_version("ecomrl-gmv", "1")
    assert version.tags["simulator"] == str(study / EVALUATORS_DIR)
    requests, _ = load_requests(data.requests)
    part = requests.take(np.arange(4))
    model = mlflow.pyfunc.load_model("models:/ecomrl-gmv/1")
    orders = model.predict({"user": part.user, "items": part.items, "valid": part.valid})
    assert orders.shape == (4, 17)
    for order, valid in zip(orders, part.valid, strict=True):
        assert len(set(order.tolist())) == 17 and valid[order].all()


def _ecomrl(*args: str, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_interrupted_sweep_resumes_into_the_same_runs(simulator, tmp_path, mlflow_store):
    """Ctrl-C (SIGINT) after the first checkpoint, then --resume: every trial finishes, each
    still one MLflow run, the interrupted one's curve carried on."""
    config = tiny_sweep(
        tmp_path / "sweep.yaml", simulator, name="resumed", budget=2048,
        scheduler={"kind": "fifo"}, register_best=False,
    )  # fmt: skip
    storage = tmp_path / "sweeps"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store, "PYTHONUNBUFFERED": "1"}
    args = ("sweep", str(config), "--storage", str(storage), "--no-progress")
    first = _ecomrl(*args, env=env)
    deadline = time.monotonic() + 240
    while not list(storage.glob("resumed/*/checkpoint_*")):
        assert first.poll() is None, first.stdout.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.5)
    first.send_signal(signal.SIGINT)
    output = first.communicate(timeout=180)[0].decode()
    assert first.returncode == 2, output
    assert "continue it with: ecomrl sweep CONFIG --resume" in output

    client = mlflow.MlflowClient(mlflow_store)
    parent = parent_run(client, "sweep-resumed")
    before = {
        c.info.run_id: len(client.get_metric_history(c.info.run_id, "sim_r2p"))
        for c in child_runs(client, parent.info.run_id)
    }
    second = _ecomrl(*args, "--resume", env=env)
    output = second.communicate(timeout=400)[0].decode()
    assert second.returncode == 0, output
    assert parent_run(client, "sweep-resumed").info.run_id == parent.info.run_id
    children = child_runs(client, parent.info.run_id)
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    for child in children:  # an iteration redone after the restore logs its step again
        steps = {m.step for m in client.get_metric_history(child.info.run_id, "sim_r2p")}
        assert steps == set(range(1, 17))
    assert set(before) <= {c.info.run_id for c in children}
