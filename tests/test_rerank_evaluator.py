"""List evaluators (pipeline/rerank/evaluator.py) on synthetic requests with a known truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from rerank_factory import Truth, synthetic_requests

from pipeline.errors import UserError
from pipeline.rerank.config import EvaluatorConfig
from pipeline.rerank.evaluator import (
    EvaluatorKind,
    ListEvaluator,
    load_evaluator,
    pair_accuracy,
    save_evaluator,
    score_lists,
    train_evaluator,
)

torch.set_num_threads(1)

K = 10
# Enough epochs on 1500 requests for the interaction of query and features to be learned.
TRAIN = EvaluatorConfig(epochs=15, batch_size=64, hidden=(32, 32), rnn_hidden=16)


def inputs(requests, order=None):
    """The tensors `forward` takes, for the logged order unless `order` is given."""
    order = requests.shown if order is None else order
    return (
        torch.as_tensor(requests.user),
        torch.as_tensor(requests.items),
        torch.as_tensor(requests.valid),
        torch.as_tensor(order),
    )


def model(kind: EvaluatorKind, requests, seed: int = 0) -> ListEvaluator:
    torch.manual_seed(seed)
    return ListEvaluator(kind, requests.user.shape[1], requests.items.shape[2]).eval()


@pytest.fixture(scope="module")
def requests():
    """Candidate sets of different sizes (padding in the batch)."""
    return synthetic_requests(64, n=(12, 20, 30), k=K, seed=1)


@pytest.fixture(scope="module")
def split():
    return synthetic_requests(2000, n=20, k=K, seed=0).split(0.25)


@pytest.fixture(scope="module")
def trained(split):
    train, test = split
    kinds = ("simple", "context", "causal")
    return {kind: train_evaluator(EvaluatorKind(kind), train, test, TRAIN) for kind in kinds}


@pytest.mark.parametrize("kind", list(EvaluatorKind))
def test_forward_shapes_with_padding_and_prefixes(kind, requests):
    net = model(kind, requests)
    user, items, valid, order = inputs(requests)
    for length in (K, 3, 1):
        click, pay = net(user, items, valid, order[:, :length])
        assert click.shape == pay.shape == (len(requests), length)
        assert torch.isfinite(click).all() and torch.isfinite(pay).all()
    # Padding never leaks in: more of it, holding junk, leaves the scores unchanged.
    junk = torch.cat([items, torch.full_like(items[:, :5], 9.0)], dim=1)
    padded = torch.cat([valid, torch.zeros_like(valid[:, :5])], dim=1)
    torch.testing.assert_close(net(user, junk, padded, order), net(user, items, valid, order))


def test_causal_steps_match_forward(requests):
    net = model(EvaluatorKind.CAUSAL, requests)
    user, items, valid, order = inputs(requests)
    click, pay = net(user, items, valid, order)
    state = net.start(user, items, valid)
    for j in range(K):
        pay_j, click_j, state = net.step(state, order[:, j])
        torch.testing.assert_close(pay_j, torch.sigmoid(pay[:, j]), atol=1e-5, rtol=0)
        torch.testing.assert_close(click_j, torch.sigmoid(click[:, j]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["simple", "ae", "context"])
def test_step_needs_the_causal_evaluator(kind, requests):
    net = model(EvaluatorKind(kind), requests)
    with pytest.raises(ValueError, match="causal"):
        net.start(*inputs(requests)[:3])


def _swap_below(order: torch.Tensor, j: int) -> torch.Tensor:
    """`order` with its positions below j reversed: only the items below j move."""
    changed = order.clone()
    changed[:, j + 1 :] = order[:, j + 1 :].flip(1)
    return changed


@pytest.mark.parametrize(("kind", "sees_below"), [("causal", False), ("context", True)])
def test_pay_at_j_depends_on_items_below_only_for_context(kind, sees_below, requests):
    net = model(EvaluatorKind(kind), requests)
    user, items, valid, order = inputs(requests)
    j = 4
    _, pay = net(user, items, valid, order)
    _, moved = net(user, items, valid, _swap_below(order, j))
    # The CNN sees one neighbour below, so the pay at j itself changes for CONTEXT only.
    unchanged = j if sees_below else j + 1
    torch.testing.assert_close(moved[:, :unchanged], pay[:, :unchanged])
    changed = (moved[:, j] - pay[:, j]).abs().max().item()
    assert (changed > 1e-4) == sees_below


@pytest.mark.parametrize("kind", ["simple", "ae"])
def test_pointwise_models_are_order_blind(kind, requests):
    net = model(EvaluatorKind(kind), requests)
    user, items, valid, order = inputs(requests)
    click, pay = net(user, items, valid, order)
    reverse = order.flip(1)
    click_r, pay_r = net(user, items, valid, reverse)
    torch.testing.assert_close(pay_r.flip(1), pay)
    torch.testing.assert_close(click_r.flip(1), click)


def test_dcg_list_score_by_hand(requests):
    """SIMPLE: sum_j p_j / log2(j + 2), here for two positions of one request."""
    net = model(EvaluatorKind.SIMPLE, requests)
    user, items, valid, order = inputs(requests.take(np.arange(1)))
    order = order[:, :2]
    click, pay = net(user, items, valid, order)
    p0, p1 = torch.sigmoid(pay[0]).tolist()
    expected = p0 / 1.0 + p1 / np.log2(3.0)
    assert net.list_score(user, items, valid, order).item() == pytest.approx(expected, rel=1e-6)
    c0, c1 = torch.sigmoid(click[0]).tolist()
    clicks = net.list_score(user, items, valid, order, label="click").item()
    assert clicks == pytest.approx(c0 + c1 / np.log2(3.0), rel=1e-6)


def test_sequential_list_score_is_the_expected_count(requests):
    net = model(EvaluatorKind.CAUSAL, requests)
    user, items, valid, order = inputs(requests)
    _, pay = net(user, items, valid, order)
    expected = torch.sigmoid(pay).sum(dim=1)
    torch.testing.assert_close(net.list_score(user, items, valid, order), expected)


def test_score_lists_batches_like_one_call(requests):
    """Batches trim padding per batch; scores must not depend on the batching."""
    net = model(EvaluatorKind.CONTEXT, requests)
    whole = net.list_score(*inputs(requests)).detach().numpy()
    batched = score_lists(net, requests, requests.shown, "pay", batch_size=7)
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)


def test_pair_accuracy_by_hand():
    counts = np.array([0, 1, 2, 2])
    assert pair_accuracy(np.array([0.1, 0.2, 0.3, 0.4]), counts, pairs=2000) == 1.0
    assert pair_accuracy(np.array([0.4, 0.3, 0.2, 0.1]), counts, pairs=2000) == 0.0
    assert np.isnan(pair_accuracy(np.zeros(4), np.ones(4), pairs=100))


@pytest.mark.parametrize("kind", ["context", "causal"])
def test_training_learns_the_truth_and_context_helps(kind, trained):
    """The truth reaches pay AUC ~0.86 on these lists and a list-level pair accuracy ~0.7;
    the pointwise SIMPLE model, blind to position and to the items above, stays near 0.6."""
    _, simple = trained["simple"]
    _, metrics = trained[kind]
    assert metrics["pay_auc"] > 0.72
    assert metrics["click_auc"] > 0.62
    assert metrics["pay_auc"] > simple["pay_auc"] + 0.1
    assert metrics["pay_pair_accuracy"] > 0.55
    assert metrics["train_seconds"] > 0


def test_shuffled_labels_teach_nothing(split):
    """Guards the AUC threshold above: with pays shuffled over all requests and positions the
    same training is at chance."""
    train, test = split
    rng = np.random.default_rng(0)
    pays = rng.permutation(train.pays.ravel()).reshape(train.pays.shape)
    shuffled = dataclasses.replace(train, pays=pays)
    _, metrics = train_evaluator(EvaluatorKind.CAUSAL, shuffled, test, TRAIN)
    # Below 0.5 is possible too: the model then fits noise of the training pays.
    assert 0.35 < metrics["pay_auc"] < 0.62


def test_training_is_deterministic(split):
    train, test = split
    config = TRAIN.model_copy(update={"epochs": 1})
    first, _ = train_evaluator(EvaluatorKind.AE, train, test, config)
    again, _ = train_evaluator(EvaluatorKind.AE, train, test, config)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_save_load_round_trip(trained, requests, tmp_path):
    net, _ = trained["causal"]
    save_evaluator(net, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"causal.safetensors"}
    loaded = load_evaluator(tmp_path, EvaluatorKind.CAUSAL)
    assert not loaded.training and loaded.config == net.config
    args = inputs(requests)
    for a, b in zip(net(*args), loaded(*args), strict=True):
        assert torch.equal(a, b)


def test_load_missing_evaluator_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"context\.safetensors"):
        load_evaluator(tmp_path / "nowhere", EvaluatorKind.CONTEXT)


def test_config_rejects_even_kernels():
    with pytest.raises(ValueError, match="odd"):
        EvaluatorConfig(cnn_kernel=4)


def test_truth_prefers_diverse_lists():
    """The factory's truth itself: putting a near-duplicate right below its twin costs pays."""
    requests = synthetic_requests(200, n=20, k=K, seed=3)
    _, pay = Truth().probs(requests, requests.shown)
    _, none = Truth(redundancy=0.0).probs(requests, requests.shown)
    assert (pay <= none + 1e-12).all() and pay.sum() < 0.9 * none.sum()
