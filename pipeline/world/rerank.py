"""The candidate-list (re-ranking) market: purchase depends on the list's context.

A request carries n candidates (their `rerank_feature_dim` observable features and prices); the
logging re-ranker shows k of them. The TRUE model of a purchase at shown position j (item i) is

    logit P(pay_j) = b_pay + intent(attrs) + v_i - decay * log(1 + j)
                     - w_sim * max(0, max_{l<j} cos(f_i, f_l))                 (redundancy)
                     + w_anc * (mean_{l<j} log price_l - log price_i)          (price anchoring)

with v_i = theta(attrs, query) . f_i, the customer's average preference over the observable
features. The last two terms depend only on the items shown ABOVE position j, so the same item
sells differently in different lists: the context-dependent purchase a list generator must learn.
Clicks do not depend on context: logit P(click_j) = b_click + 0.8 v_i - decay * log(1 + j), and a
paid item is always clicked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.world.market import Population, Sessions, World, sigmoid

_CLICK_UTILITY_WEIGHT = 0.8


@dataclass(frozen=True)
class RerankRequests:
    """Logged requests; variable-length candidate lists are flat with `offsets` (M + 1,)."""

    session: np.ndarray  # (M,) row of the Sessions batch
    offsets: np.ndarray  # (M + 1,) int64
    candidates: np.ndarray  # (sum n,) int64 item ids
    features: np.ndarray  # (sum n, rerank_feature_dim) float32
    prices: np.ndarray  # (sum n,) float32
    shown_order: np.ndarray  # (M, k) int16 candidate indices, top first
    clicks: np.ndarray  # (M, k) int8 per shown position
    pays: np.ndarray  # (M, k) int8 per shown position


class RerankMarket:
    """The true context-dependent purchase model of candidate lists in a `World`."""

    def __init__(self, world: World):
        self.world = world
        self.spec = world.spec
        self.params = world.params

    def _utility(
        self, customer_attrs: np.ndarray, query: np.ndarray, shown_features: np.ndarray
    ) -> np.ndarray:
        theta = self.world.preference(customer_attrs, query)
        dims = min(theta.shape[1], shown_features.shape[2])
        return np.einsum("bkf,bf->bk", shown_features[..., :dims], theta[:, :dims])

    def _position(self, k: int) -> np.ndarray:
        return -self.params.rerank_position_decay * np.log1p(np.arange(k))

    def true_pay_probs(
        self,
        customer_attrs: np.ndarray,
        query: np.ndarray,
        features: np.ndarray,
        prices: np.ndarray,
        order: np.ndarray,
    ) -> np.ndarray:
        """P(pay) of each shown position. customer_attrs (B, G) int, query (B,) int, features
        (B, n, rerank_feature_dim), prices (B, n), order (B, k) candidate indices shown top first.
        Returns float64 (B, k)."""
        p = self.params
        order = np.asarray(order, dtype=np.int64)
        shown = np.take_along_axis(np.asarray(features, dtype=np.float64), order[:, :, None], 1)
        log_price = np.log(np.take_along_axis(np.asarray(prices, dtype=np.float64), order, 1))
        k = order.shape[1]
        above = np.tri(k, k, -1, dtype=bool)  # above[j, l]: position l is above position j
        unit = shown / np.maximum(np.linalg.norm(shown, axis=2, keepdims=True), 1e-12)
        cosine = np.where(above, np.einsum("bjf,blf->bjl", unit, unit), -np.inf)
        redundancy = np.maximum(cosine.max(axis=2), 0.0)  # 0 at the top
        count = np.arange(k)
        mean_above = (np.cumsum(log_price, axis=1) - log_price) / np.maximum(count, 1)
        anchor = np.where(count > 0, mean_above - log_price, 0.0)
        logit = (
            p.rerank_pay_bias
            + self.world.attribute_intent(customer_attrs)[:, None]
            + self._utility(customer_attrs, query, shown)
            + self._position(k)
            - p.rerank_similarity_weight * redundancy
            + p.rerank_anchor_weight * anchor
        )
        return sigmoid(logit)

    def click_probs(
        self, customer_attrs: np.ndarray, query: np.ndarray, features: np.ndarray, order: np.ndarray
    ) -> np.ndarray:
        """P(click) of each shown position (B, k), shapes as in `true_pay_probs`."""
        order = np.asarray(order, dtype=np.int64)
        shown = np.take_along_axis(np.asarray(features, dtype=np.float64), order[:, :, None], 1)
        utility = self._utility(customer_attrs, query, shown)
        return sigmoid(
            self.params.rerank_click_bias
            + _CLICK_UTILITY_WEIGHT * utility
            + self._position(order.shape[1])
        )

    def expected_purchases_and_gmv(
        self,
        customer_attrs: np.ndarray,
        query: np.ndarray,
        features: np.ndarray,
        prices: np.ndarray,
        order: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Expected items paid (B,) and expected GMV (B,) of showing `order` (shapes as in
        `true_pay_probs`): the PAY and GMV rewards of a list."""
        pay = self.true_pay_probs(customer_attrs, query, features, prices, order)
        shown_prices = np.take_along_axis(
            np.asarray(prices, dtype=np.float64), np.asarray(order, dtype=np.int64), 1
        )
        return pay.sum(axis=1), (pay * shown_prices).sum(axis=1)

    def log_requests(
        self, pop: Population, sessions: Sessions, rng: np.random.Generator, day: int = 0
    ) -> RerankRequests:
        """Requests of a fraction `rerank_rate` of the sessions, shown by the logging re-ranker
        (base relevance + noise), labelled by the true model."""
        p, cat = self.params, self.world.catalogue
        dims, k = self.spec.rerank_feature_dim, p.rerank_shown
        session = np.flatnonzero(rng.random(sessions.size) < p.rerank_rate)
        sizes = np.asarray(p.rerank_sizes)[
            rng.choice(len(p.rerank_sizes), size=session.size, p=p.rerank_size_probs)
        ]
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        candidates = np.empty(offsets[-1], dtype=np.int64)
        shown = np.empty((session.size, k), dtype=np.int16)
        clicks = np.empty((session.size, k), dtype=np.int8)
        pays = np.empty((session.size, k), dtype=np.int8)
        relevance = cat.relevance_at(day, p.drift_relevance_per_day)
        strides = self.world.strides[p.items_per_category]
        for n in p.rerank_sizes:
            rows = np.flatnonzero(sizes == n)
            if rows.size == 0:
                continue
            start = rng.integers(0, p.items_per_category, rows.size)
            stride = strides[rng.integers(0, strides.size, rows.size)]
            offs = (start[:, None] + stride[:, None] * np.arange(n)) % p.items_per_category
            cand = sessions.query[session[rows], None] * p.items_per_category + offs
            noise = p.rerank_logging_noise * rng.standard_normal(cand.shape)
            order = np.argsort(-(relevance[cand] + noise), axis=1)[:, :k]
            attrs = pop.attrs[sessions.user[session[rows]]]
            query = sessions.query[session[rows]]
            feats, prices = cat.features[cand, :dims], cat.prices[cand]
            pay = rng.random(order.shape) < self.true_pay_probs(attrs, query, feats, prices, order)
            click = pay | (rng.random(order.shape) < self.click_probs(attrs, query, feats, order))
            candidates[offsets[rows][:, None] + np.arange(n)] = cand
            shown[rows], clicks[rows], pays[rows] = order, click, pay
        return RerankRequests(
            session,
            offsets,
            candidates,
            cat.features[candidates, :dims],
            cat.prices[candidates],
            shown,
            clicks,
            pays,
        )
