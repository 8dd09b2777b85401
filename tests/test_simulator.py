"""Behaviour cloning, MAIL and the simulator build: losses on problems with a known answer,
the build end to end on RLlib, the checkpoint round trip and bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
import torch

import factory
from pipeline.config import IngestConfig
from pipeline.errors import UserError
from pipeline.learners.adversarial import discriminator_step
from pipeline.logs.ingest import ingest_logs
from pipeline.logs.schema import LogSpec
from pipeline.simulator.behaviour_cloning import clone
from pipeline.simulator.build import build_simulator
from pipeline.simulator.checkpoint import MANIFEST, component_path, load_simulator
from pipeline.simulator.config import BehaviourConfig, SimulatorConfig
from pipeline.simulator.customers import Customers
from pipeline.simulator.data import BUY, LEAVE, TURN_PAGE, Transitions
from pipeline.simulator.mail import Discriminator, imitation_reward

SPEC = LogSpec()


def transitions(n: int, page: np.ndarray, decision: np.ndarray, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    customers = Customers(
        attrs=np.stack([rng.integers(0, c, n) for c in SPEC.attr_cardinalities], 1),
        query=rng.integers(0, SPEC.n_query_categories, n),
        dense=rng.normal(size=(n, SPEC.dense_dim)).astype(np.float32),
    )
    return Transitions(
        customers=customers,
        page_index=page,
        last_clicks=np.zeros(n, np.int64),
        engine_action=rng.normal(0, 0.1, (n, SPEC.action_dim)).astype(np.float32),
        clicks=rng.integers(0, 3, n),
        decision=decision,
        amount=np.where(decision == BUY, rng.lognormal(3, 0.5, n), np.nan).astype(np.float32),
    )


def test_behaviour_cloning_recovers_the_logged_decision_probabilities():
    """P(buy | page 0) = 0.2 and P(buy | page 1) = 0.6: the maximum-likelihood answer."""
    rng = np.random.default_rng(0)
    n = 8000
    page = rng.integers(0, 2, n)
    buys = rng.random(n) < np.where(page == 0, 0.2, 0.6)
    decision = np.where(buys, BUY, np.where(page == 0, TURN_PAGE, LEAVE))
    data = transitions(n, page, decision)
    config = BehaviourConfig(hidden=(32,), epochs=15, min_steps=0, batch_size=256, lr=3e-3)
    cloned = clone(data, SPEC, config, amount_hidden=(16,), seed=0, progress=False)

    obs = torch.as_tensor(data.observation(SPEC))
    with torch.no_grad():
        h = cloned.customer.hidden(obs, torch.as_tensor(data.engine_action))
        probs = torch.softmax(cloned.customer.decision_logits(h, torch.as_tensor(data.clicks)), -1)
    assert probs[page == 0, BUY].mean() == pytest.approx(0.2, abs=0.04)
    assert probs[page == 1, BUY].mean() == pytest.approx(0.6, abs=0.04)
    assert probs[page == 0, LEAVE].mean() < 0.05  # never logged on page 0
    assert cloned.metrics["customer_validation_nll"] < math.log(3 * 11)  # beats uniform


def test_discriminator_reward_is_the_log_density_ratio():
    """Logged pairs buy with p = 0.75, generated ones with p = 0.5 (else leave): at the
    optimum the reward is log(p_logged / p_generated) for each action."""
    g = torch.Generator().manual_seed(0)
    n, obs_dim = 4096, 4

    def pairs(p_buy: float) -> dict[str, torch.Tensor]:
        buy = torch.rand(n, generator=g) < p_buy
        return {
            "obs": torch.zeros(n, obs_dim),
            "action": torch.zeros(n, 2),
            "clicks": torch.zeros(n, dtype=torch.int64),
            "decision": torch.where(buy, BUY, LEAVE),
        }

    disc = Discriminator(obs_dim, 2, page_size=3, hidden=(16,))
    optimiser = torch.optim.Adam(disc.parameters(), lr=1e-2)
    for _ in range(300):
        stats = discriminator_step(disc, optimiser, pairs(0.5), pairs(0.75))
    probe = pairs(0.5)
    reward = imitation_reward(disc, probe)
    bought = probe["decision"].numpy() == BUY
    assert reward[bought].mean() == pytest.approx(math.log(0.75 / 0.5), abs=0.1)
    assert reward[~bought].mean() == pytest.approx(math.log(0.25 / 0.5), abs=0.1)
    assert 0.5 <= stats["discriminator_accuracy"] <= 0.7  # overlapping: no perfect split


def tiny_config(**updates) -> SimulatorConfig:
    config = {
        "baselines": False,
        "density": {"gan_sd": {"steps": 20, "hidden": [32]}},
        "behaviour": {"epochs": 1, "min_steps": 0, "hidden": [32]},
        "mail": {
            "iterations": 2,
            "env_steps_per_iteration": 256,
            "num_envs_per_env_runner": 32,
            # A remote env runner: MAIL samples in another process, as on a cluster.
            "num_env_runners": 1,
            "minibatch_size": 128,
            "num_epochs": 1,
            "discriminator_steps": 2,
            "discriminator_batch_size": 128,
        },
    }
    config.update(updates)
    return SimulatorConfig.model_validate(config)


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("sim")
    factory.write(factory.page_views(400, pages=3, seed=3), root / "logs")
    ingest_logs(root / "logs", root / "traj", IngestConfig(shards=2), progress=False)
    return root / "traj"


@pytest.fixture(scope="module")
def built(trajectories, tmp_path_factory):
    out = tmp_path_factory.mktemp("checkpoint")
    build_simulator(trajectories, out, tiny_config(), progress=False)
    return out


def test_build_writes_a_versioned_loadable_checkpoint(built, trajectories):
    simulator = load_simulator(built)
    manifest = simulator.manifest
    assert manifest.action_dim == SPEC.action_dim and manifest.schema_version == "1"
    assert len(manifest.data_fingerprint) == 64 and manifest.metrics["customers"] == 400
    assert manifest.metrics["page_views"] == 1200
    assert {"mail.discriminator_accuracy", "gan_sd.marginal_kl"} <= set(manifest.metrics)
    # factory actions are N(0, 0.01^2) in 27 dimensions: norms near 0.01 * sqrt(27) = 0.052
    assert 0.04 < manifest.metrics["logged_action_norm.p50"] < 0.065
    expected = {"customer_generator", "customer_policy", "engine_policy", "bc_customer_policy"}
    assert expected | {"amount"} == set(manifest.files)
    for name in manifest.files:
        module = simulator.component(name)
        assert sum(p.numel() for p in module.parameters()) > 0
    # MAIL moved pi^c away from its behaviour-cloning start.
    mail = simulator.component("customer_policy").state_dict()
    bc = simulator.component("bc_customer_policy").state_dict()
    assert any(not torch.equal(mail[k], bc[k]) for k in mail)


def test_checkpoint_loads_from_its_mlflow_run(built):
    import mlflow

    from pipeline import tracking

    with tracking.run("test") as active:
        tracking.log_artifacts(built, "simulator")
    simulator = load_simulator(f"runs:/{active.info.run_id}/simulator")
    assert simulator.manifest == load_simulator(built).manifest
    assert mlflow.active_run() is None


def test_checkpoint_problems_are_clear_errors(built, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    manifest = json.loads((copy / MANIFEST).read_text())

    def write(**changes):
        (copy / MANIFEST).write_text(json.dumps({**manifest, **changes}))

    write(schema_version="0")
    with pytest.raises(UserError, match="schema version '0'"):
        load_simulator(copy)
    write(format_version=99)
    with pytest.raises(UserError, match="format version 99"):
        load_simulator(copy)
    write()
    weights = component_path(copy, "customer_policy")
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupt weights file"):
        load_simulator(copy).component("customer_policy")
    with pytest.raises(UserError, match="action dimension 27, the environment is configured for 5"):
        load_simulator(copy).check_action_dim(5)
    with pytest.raises(UserError, match="not a simulator checkpoint"):
        load_simulator(tmp_path)


def test_build_from_all_quarantined_logs_stops_with_a_clear_message(cli, tmp_path, ray_session):
    table = factory.page_views(20, pages=2)
    bad = table.set_column(
        table.schema.get_field_index("customer_action"),
        "customer_action",
        pa.array(["dance"] * table.num_rows),
    )
    factory.write(bad, tmp_path / "logs")
    ingest_logs(tmp_path / "logs", tmp_path / "traj", progress=False)
    code, _, err = cli("simulator", "build", tmp_path / "traj", "--out", tmp_path / "sim")
    assert code == 2
    assert "no accepted page views" in err and "40 quarantined" in err
    code, _, err = cli("simulator", "build", tmp_path / "nowhere", "--out", tmp_path / "sim2")
    assert code == 2 and "no such directory" in err


def test_a_fresh_process_loads_every_component(built):
    """An env runner imports only the env and the checkpoint code: every class must load."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pipeline.simulator.checkpoint import load_simulator\n"
        "sim = load_simulator(sys.argv[1])\n"
        "print(sorted(type(sim.component(n)).__name__ for n in sim.manifest.files))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(built)], capture_output=True, text=True, check=True
    ).stdout
    assert "CustomerGenerator" in out and "CustomerPolicyNet" in out


def test_mail_sessions_can_start_from_the_logged_customers(trajectories):
    """MailConfig.customers = logged: every first page is a logged customer's, drawn with
    replacement; the seed fixes the draw."""
    from pipeline.simulator.data import open_training_data
    from pipeline.simulator.mail_env import MailVectorEnv
    from pipeline.simulator.sessions import LoggedArrivals

    data = open_training_data(trajectories)
    customers, _ = data.customers("main_search")
    zeros = np.zeros(len(customers.query))
    logged = customers.observation(data.spec, zeros, zeros)
    config = {
        "spec": data.spec.model_dump(mode="json"),
        "seed": 4,
        "num_envs": 64,
        "logged_customers": {"root": str(trajectories), "scenario": "main_search",
                             "time_slice": None},
    }  # fmt: skip
    env = MailVectorEnv(config)
    first, _ = env.reset()
    assert isinstance(env._sessions.arrivals, LoggedArrivals)
    # Each first page is one of the logged customers' (rows compared exactly).
    matches = (first[:, None, :] == logged[None, :, :]).all(axis=2).any(axis=1)
    assert matches.all()
    again, _ = MailVectorEnv(config).reset()
    np.testing.assert_array_equal(first, again)
