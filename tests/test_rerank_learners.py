"""Every re-ranking learner trains on `ReRank-v0` (an env that raises on any masked action, so
a masked item is never picked), PPO-MC learns, GAIL reports its discriminator AUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rerank_data import make_rerank_data

from pipeline.rerank.config import RerankConfig, RerankLearner
from pipeline.rerank.evaluator import EvaluatorKind, load_evaluator, score_lists
from pipeline.rerank.generator import generator_net
from pipeline.rerank.metrics import better_percentage, generated_orders
from pipeline.rerank.requests import load_requests
from pipeline.rerank.train import rllib_config

TINY = {"num_envs": 16, "group_size": 4, "minibatch_size": 128, "num_epochs": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_rerank_data(tmp_path_factory.mktemp("rerank"))


def _study(learner: RerankLearner, **extra) -> RerankConfig:
    return RerankConfig(runs={"run": {"learner": learner.value, **TINY, **extra}})


@pytest.mark.parametrize("learner", list(RerankLearner))
def test_every_learner_trains(ray_session, data, learner):
    torch.set_num_threads(1)
    study = _study(learner)
    algo = rllib_config(data.requests, data.evaluators.parent, study.run("run"), study).build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    learner_results = result["learners"]["default_policy"]
    assert np.isfinite(learner_results["entropy"]) and learner_results["entropy"] > 0
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] == 16 * 17
    if learner is RerankLearner.GAIL:
        assert 0.0 <= result["gail"]["discriminator_auc"] <= 1.0


def test_ppo_mc_learns_a_list_the_evaluator_prefers(ray_session, data):
    """PPO-MC's greedy lists gain in the evaluator's eyes over a few iterations and beat the
    logged order for most held-out requests (random orders: about a third)."""
    torch.set_num_threads(1)
    study = _study(RerankLearner.PPO_MC, num_envs=64, group_size=8, minibatch_size=512)
    evaluator = load_evaluator(data.evaluators, EvaluatorKind.CAUSAL)
    requests, _ = load_requests(data.requests)
    _, test = requests.split(study.test_fraction, study.split_seed)
    test = test.with_sizes((30,))
    algo = rllib_config(data.requests, data.evaluators.parent, study.run("run"), study).build_algo()
    try:
        start = score_lists(
            evaluator, test, generated_orders(generator_net(algo.get_module()), test, 17)
        )
        returns, bps = [], []
        for _ in range(6):
            result = algo.train()
            returns.append(result["env_runners"]["episode_return_mean"])
            net = generator_net(algo.get_module())
            orders = generated_orders(net, test, 17)
            bps.append(better_percentage(evaluator, test, orders))
    finally:
        algo.stop()
    assert score_lists(evaluator, test, orders).mean() > 1.02 * start.mean()
    assert returns[-1] > returns[0]
    assert bps[-1] >= 0.85, bps
