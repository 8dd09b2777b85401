"""`ecomrl rerank evaluate`: every trained generator on the held-out requests, judged by the
evaluator (the seed's BP) and by the truth the world knows.

For each run and each candidate-list size n of the test requests, the generator's greedy list is
compared with the logged order of the same candidates:
- the CAUSAL evaluator's expected purchases and GMV-quantile reward (what the generator was
  trained to maximise), and BP = share of requests where it scores the generated list higher;
- BP by the CONTEXT evaluator (CNN + RNN), a second opinion the generator never optimised
  (the seed judges lists with this model);
- the world's TRUE expected purchases and GMV (raw prices) of both lists
  (`pipeline.world.rerank.RerankMarket`), which no model of the pipeline has seen.
Means are per request; the gain is generated / logged - 1 with a 95% CI clustered by request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.rerank.evaluator import (
    EvaluatorKind,
    ListEvaluator,
    load_evaluator,
    position_probs,
    score_lists,
)
from pipeline.rerank.metrics import generated_orders
from pipeline.rerank.requests import Requests
from pipeline.rerank.rewards import RewardKind, step_reward
from pipeline.rerank.train import (
    EVALUATORS_DIR,
    RUNS_DIR,
    load_generator,
    read_study,
    split_requests,
)
from pipeline.stats import ratio_estimate, z_value
from pipeline.world import World
from pipeline.world.rerank import RerankMarket

TEST_SIZES = (17, 30, 50, 100)


@dataclass(frozen=True)
class ListValues:
    """Per-request values (M,) of one set of lists."""

    evaluator_pay: np.ndarray
    evaluator_gmv: np.ndarray  # the GMV reward: p * price quantile
    context_pay: np.ndarray  # the CONTEXT evaluator's (CNN + RNN) expected purchases
    true_pay: np.ndarray
    true_gmv: np.ndarray


@dataclass(frozen=True)
class Judges:
    evaluator: ListEvaluator  # CAUSAL: the generator's reward
    context: ListEvaluator  # CONTEXT: a second opinion the generator never optimised
    market: RerankMarket  # the truth


def list_values(judges: Judges, requests: Requests, orders: np.ndarray) -> ListValues:
    _, pay = position_probs(judges.evaluator, requests, orders)
    quantile = np.take_along_axis(requests.price_quantile, orders, 1)
    prices = np.where(requests.valid, requests.prices, 1.0)
    true_pay, true_gmv = judges.market.expected_purchases_and_gmv(
        requests.attrs, requests.query, requests.features, prices, orders
    )
    return ListValues(
        pay.sum(1),
        step_reward(pay, quantile, RewardKind.GMV).sum(1),
        score_lists(judges.context, requests, orders),
        true_pay,
        true_gmv,
    )


def _gain(generated: np.ndarray, logged: np.ndarray) -> dict[str, float]:
    """Ratio of means minus 1, with its CI (requests are the clusters)."""
    estimate = ratio_estimate(generated, logged, z_value(0.95))
    return {"gain": estimate.value - 1, "low": estimate.ci_low - 1, "high": estimate.ci_high - 1}


def compare(generated: ListValues, logged: ListValues) -> dict:
    out: dict = {
        "bp": float(np.mean(generated.evaluator_pay > logged.evaluator_pay)),
        "bp_context": float(np.mean(generated.context_pay > logged.context_pay)),
    }
    for field in ("evaluator_pay", "evaluator_gmv", "true_pay", "true_gmv"):
        new, old = getattr(generated, field), getattr(logged, field)
        out[field] = {
            "generated": float(new.mean()),
            "logged": float(old.mean()),
            **_gain(new, old),
        }
    return out


def evaluate_study(out: Path, world_seed: int) -> dict:
    """Score every run under `out` at every test size; returns the result dict."""
    ingested, config = read_study(out)
    split = split_requests(ingested, config)
    judges = Judges(
        load_evaluator(out / EVALUATORS_DIR, EvaluatorKind.CAUSAL),
        load_evaluator(out / EVALUATORS_DIR, EvaluatorKind.CONTEXT),
        RerankMarket(World(split.spec, seed=world_seed)),
    )
    sizes = [n for n in TEST_SIZES if n in set(split.test.sizes.tolist())]
    tests = {n: split.test.with_sizes((n,)) for n in sizes}
    logged = {n: list_values(judges, r, r.shown) for n, r in tests.items()}
    runs = {}
    for name in config.runs:
        net = load_generator(out, name)
        runs[name] = {
            "config": config.run(name).model_dump(mode="json"),
            "curves": json.loads((out / RUNS_DIR / name / "curves.json").read_text()),
            "by_size": {
                str(n): compare(
                    list_values(judges, requests, generated_orders(net, requests, config.k)),
                    logged[n],
                )
                for n, requests in tests.items()
            },
        }
    return {
        "evaluators": json.loads((out / "evaluators.json").read_text()),
        "test_requests": {str(n): len(r) for n, r in tests.items()},
        "runs": runs,
    }
