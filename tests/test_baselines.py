"""SL1 and SL2 (paper, eq. 4 and 5): the losses by hand, training on tiny ingested logs, and SL1
recovering the actions that sold."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

import factory
from pipeline.baselines.config import SupervisedConfig
from pipeline.baselines.supervised import sl1_loss, sl2_loss, train_supervised
from pipeline.config import IngestConfig
from pipeline.logs.ingest import ingest_logs
from pipeline.logs.observation import encode_observation, observation_dim

SPEC = factory.SPEC

# Three rows, two action dimensions: rows 0 and 2 sold (S1), row 1 did not (S0).
PRED = torch.tensor([[0.5, 0.0], [0.0, 0.0], [1.0, -1.0]])
ACTION = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
PURCHASE = torch.tensor([True, False, True])
# |pi(s) - a|^2 per row: 0.25, 1 + 1 = 2, 1 + 1 = 2;  |pi(s)|^2 per row: 0.25, 0, 2.


def test_sl1_is_the_mean_squared_distance_over_purchases():
    # (0.25 + 2) / 2; row 1 (no purchase) does not count
    assert sl1_loss(PRED, ACTION, PURCHASE).item() == pytest.approx(1.125)


def test_sl2_adds_the_push_from_s0_and_the_norm_penalty():
    # 1.125 - 0.3 * 2 / 1 + 0.001 * (0.25 + 0 + 2) / 3 = 1.125 - 0.6 + 0.00075
    loss = sl2_loss(PRED, ACTION, PURCHASE, lambda1=0.3, lambda2=0.001)
    assert loss.item() == pytest.approx(0.52575)


def test_sl2_without_lambdas_is_sl1():
    s1 = PURCHASE.nonzero().squeeze(1)
    restricted = ((PRED[s1] - ACTION[s1]) ** 2).sum(dim=1).mean()
    sl2 = sl2_loss(PRED, ACTION, PURCHASE, lambda1=0.0, lambda2=0.0)
    assert sl2.item() == pytest.approx(restricted.item())
    assert sl2.item() == pytest.approx(sl1_loss(PRED, ACTION, PURCHASE).item())


def test_a_minibatch_without_purchases_has_no_s1_term():
    pred = PRED.clone().requires_grad_()
    none = torch.zeros(3, dtype=torch.bool)
    sl1 = sl1_loss(pred, ACTION, none)
    sl1.backward()
    assert sl1.item() == 0.0 and not pred.grad.any()
    # SL2: - 0.3 * (0.25 + 2 + 2) / 3 + 0.001 * 2.25 / 3
    sl2 = sl2_loss(PRED, ACTION, none, lambda1=0.3, lambda2=0.001)
    assert sl2.item() == pytest.approx(-0.425 + 0.00075)


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("sl")
    factory.write(factory.page_views(300, pages=3, seed=5), root / "logs")
    ingest_logs(root / "logs", root / "traj", IngestConfig(shards=2), progress=False)
    return root / "traj"


@pytest.mark.parametrize("kind", ["sl1", "sl2"])
def test_training_lowers_the_loss_and_acts_in_the_box(trajectories, kind):
    config = SupervisedConfig(kind=kind, hidden=(32,), epochs=4, batch_size=64, lr=3e-3)
    result = train_supervised(trajectories, config, progress=False)
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    training_rows = result.metrics["sl.purchases"] if kind == "sl1" else 900  # SL1 reads S1 only
    assert result.metrics["sl.rows"] == training_rows
    obs = torch.rand(5, observation_dim(SPEC))
    with torch.no_grad():
        action = result.policy(obs)
    assert action.shape == (5, SPEC.action_dim)
    assert action.abs().max() <= 1.0


def test_max_steps_stops_training(trajectories):
    config = SupervisedConfig(kind="sl2", hidden=(8,), epochs=50, batch_size=64, max_steps=3)
    result = train_supervised(trajectories, config, progress=False)
    assert result.metrics["sl.steps"] == 3 and len(result.epoch_losses) == 1


def _target(query: np.ndarray) -> np.ndarray:
    """The action that sells for each query category: a linear map of its one-hot."""
    weights = 0.6 * np.sin(np.arange(SPEC.n_query_categories)[:, None] + np.arange(SPEC.action_dim))
    return weights[query].astype(np.float32)


def test_sl1_recovers_the_actions_that_sold(tmp_path, ray_session):
    """Logged actions are the target plus noise; purchases happen where the noise was small
    (sd 0.02), other pages got far-off actions (sd 0.4): SL1 learns the target."""
    rng = np.random.default_rng(0)
    table = factory.page_views(1500, pages=2, seed=1)
    query = table.column("query_category").to_numpy()
    bought = table.column("purchase").to_numpy(zero_copy_only=False)
    noise = np.where(bought[:, None], 0.02, 0.4) * rng.normal(size=(len(query), SPEC.action_dim))
    action = np.clip(_target(query) + noise, -1, 1).astype(np.float32)
    index = table.schema.get_field_index("engine_action")
    field = table.schema.field(index)
    table = table.set_column(index, field, pa.array(list(action), type=field.type))
    factory.write(table, tmp_path / "logs")
    ingest_logs(tmp_path / "logs", tmp_path / "traj", IngestConfig(shards=1), progress=False)

    config = SupervisedConfig(kind="sl1", hidden=(64,), epochs=25, batch_size=32, lr=3e-3)
    policy = train_supervised(tmp_path / "traj", config, progress=False).policy

    n = 500
    query = rng.integers(0, SPEC.n_query_categories, n)
    obs = encode_observation(
        SPEC,
        np.stack([rng.integers(0, c, n) for c in SPEC.attr_cardinalities], axis=1),
        query,
        rng.normal(size=(n, SPEC.dense_dim)),
        np.ones(n),  # sales happen on the factory's last page, the second
        rng.integers(0, 4, n),
    )
    with torch.no_grad():
        pred = policy(torch.as_tensor(obs)).numpy()
    error = ((pred - _target(query)) ** 2).sum(axis=1).mean()
    baseline = (_target(query) ** 2).sum(axis=1).mean()  # predicting 0
    assert error < 0.1 * baseline, (error, baseline)  # measured: 0.034 * baseline
