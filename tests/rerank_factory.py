"""Synthetic re-ranking `Requests` with a known purchase model, independent of the world.

The hidden truth (`Truth`) makes the purchase of the item at shown position j depend on the
item, the position and the items ABOVE j, as the seed assumes:

    logit P(pay_j)  = pay_bias + intent(attrs) + v_i - position_decay * log(1 + j)
                      - redundancy * max(0, max_{l<j} cos(f_i, f_l))
                      + anchor * (mean_{l<j} log price_l - log price_i)
    logit P(click_j) = click_bias + v_i - position_decay * log(1 + j), and a pay is a click,

with v_i = theta[query] . f_i. Candidates come in clusters of near-duplicates, so redundancy
differs a lot between orders of the same set. The logged order shows the k candidates of
highest v_i + noise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.logs.schema import LogSpec
from pipeline.rerank.requests import Requests, item_inputs, user_vector

SPEC = LogSpec()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Truth:
    pay_bias: float = -2.5
    click_bias: float = -1.5
    position_decay: float = 0.3
    redundancy: float = 2.5
    anchor: float = 0.5
    cluster_size: int = 3  # candidates per cluster of near-duplicates
    logging_noise: float = 1.0
    spec: LogSpec = SPEC

    def theta(self) -> np.ndarray:
        """Preference per query category (fixed: the same truth for every seed)."""
        rng = np.random.default_rng(12345)
        return rng.normal(0.0, 0.4, (self.spec.n_query_categories, self.spec.rerank_feature_dim))

    def intent(self, attrs: np.ndarray) -> np.ndarray:
        """Customers of higher purchase power (attribute 1) buy more."""
        levels = self.spec.attr_cardinalities[1] - 1
        return attrs[:, 1].astype(np.float64) / levels - 0.5

    def utility(self, requests: Requests) -> np.ndarray:
        """v_i (M, N)."""
        return np.einsum("mnf,mf->mn", requests.features, self.theta()[requests.query])

    def probs(self, requests: Requests, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True (click_probs, pay_probs), each (M, L), of showing `orders` (M, L)."""
        orders = np.asarray(orders, dtype=np.int64)
        length = orders.shape[1]
        value = np.take_along_axis(self.utility(requests), orders, 1)
        shown = np.take_along_axis(requests.features, orders[..., None], 1).astype(np.float64)
        unit = shown / np.maximum(np.linalg.norm(shown, axis=2, keepdims=True), 1e-12)
        above = np.tri(length, length, -1, dtype=bool)
        cosine = np.where(above, np.einsum("mjf,mlf->mjl", unit, unit), -np.inf)
        redundant = np.maximum(cosine.max(axis=2), 0.0)
        log_price = np.log(np.take_along_axis(requests.prices, orders, 1).astype(np.float64))
        count = np.arange(length)
        mean_above = (np.cumsum(log_price, axis=1) - log_price) / np.maximum(count, 1)
        anchoring = np.where(count > 0, mean_above - log_price, 0.0)
        position = -self.position_decay * np.log1p(count)
        pay = (
            self.pay_bias
            + self.intent(requests.attrs)[:, None]
            + value
            + position
            - self.redundancy * redundant
            + self.anchor * anchoring
        )
        click = self.click_bias + value + position
        return _sigmoid(click), _sigmoid(pay)


def synthetic_requests(
    m: int,
    n: int | tuple[int, ...] = 20,
    k: int = 10,
    seed: int = 0,
    truth: Truth = Truth(),
) -> Requests:
    """`m` requests of n candidates (n drawn from `n` when a tuple) with k shown and labels
    drawn from `truth`."""
    rng = np.random.default_rng(seed)
    spec = truth.spec
    sizes = rng.choice(np.atleast_1d(n), m)
    width, dims = int(sizes.max()), spec.rerank_feature_dim
    valid = np.arange(width)[None, :] < sizes[:, None]
    clusters = -(-width // truth.cluster_size)
    centres = rng.normal(size=(m, clusters, dims))
    member = rng.integers(0, clusters, (m, width))
    features = np.take_along_axis(centres, member[..., None], 1)
    features = (features + 0.25 * rng.normal(size=features.shape)) * valid[..., None]
    prices = np.where(valid, np.exp(rng.normal(3.0, 0.7, (m, width))), 0.0)
    attrs = np.stack([rng.integers(0, c, m) for c in spec.attr_cardinalities], axis=1)
    query = rng.integers(0, spec.n_query_categories, m)
    items, quantile = item_inputs(features.astype(np.float32), prices.astype(np.float32), valid)
    requests = Requests(
        request_id=np.arange(m, dtype=np.int64),
        attrs=attrs.astype(np.int16),
        query=query.astype(np.int16),
        features=features.astype(np.float32),
        prices=prices.astype(np.float32),
        valid=valid,
        shown=np.zeros((m, k), dtype=np.int64),
        clicks=np.zeros((m, k), dtype=np.int8),
        pays=np.zeros((m, k), dtype=np.int8),
        user=user_vector(spec, attrs, query),
        items=items,
        price_quantile=quantile,
    )
    noisy = truth.utility(requests) + truth.logging_noise * rng.normal(size=(m, width))
    shown = np.argsort(np.where(valid, -noisy, np.inf), axis=1)[:, :k]
    click_probs, pay_probs = truth.probs(requests, shown)
    pays = rng.random((m, k)) < pay_probs
    clicks = pays | (rng.random((m, k)) < click_probs)
    return replace(requests, shown=shown, clicks=clicks.astype(np.int8), pays=pays.astype(np.int8))
