"""The hidden market: catalogue, customers, and how a customer responds to a page (docs/world.md).

`World` is "real Taobao" for ecomrl. It plays both sides of the paper's coupled processes
(Virtual-Taobao, "Problem Description"): the engine observes s = (customer features, query) and
picks an action a (27 ranking weights); the world renders the page view and the customer, in
state s^c = <s, a, n>, answers buy / turn page / leave with the transitions T^c:

    <s, a, n> --turn_page--> <s, a', n + 1>,   buy or leave --> terminate,   n > MaxIndex --> end.

Everything here is hidden from learners; they only see the logs and deployment reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.logs.observation import encode_observation
from pipeline.logs.schema import CustomerAction, LogSpec
from pipeline.world.params import N_SLICES, TRAITS, WorldParams

Policy = Callable[[np.ndarray], np.ndarray]

SLICE_SECONDS = 86_400 // N_SLICES
CHEAP, QUALITY, POPULARITY = 0, 1, 2  # the interpretable ranking features; the rest are latent
SCENARIOS = ("main_search", "in_shop")
MAIN_SEARCH, IN_SHOP = 0, 1
ACTIONS = (CustomerAction.BUY.value, CustomerAction.TURN_PAGE.value, CustomerAction.LEAVE.value)
BUY, TURN_PAGE, LEAVE = 0, 1, 2
# Spawn keys of the independent random streams derived from one seed.
WORLD_STREAM, POPULATION_STREAM, LOG_STREAM, DEPLOY_STREAM = 0, 1, 2, 3


def stream(seed: int, *key: int) -> np.random.Generator:
    """The generator of stream `key` under `seed` (SeedSequence spawning, order-independent)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of `probs` (rows sum to 1), by inverse CDF."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((u >= cdf).sum(axis=1), probs.shape[1] - 1)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=-1, keepdims=True)) / x.std(axis=-1, keepdims=True)


def _fixed_norm(x: np.ndarray, norm: float) -> np.ndarray:
    """Rescale the last axis of `x` to the given norm."""
    return norm * x / np.linalg.norm(x, axis=-1, keepdims=True)


def _coprimes(n: int) -> np.ndarray:
    return np.array([k for k in range(1, n) if np.gcd(k, n) == 1], dtype=np.int64)


@dataclass(frozen=True)
class Catalogue:
    """All items. Item id = category * per_category + rank; shop id = item id // shop_size."""

    features: np.ndarray  # (N, F) float32; F = max(action_dim, rerank_feature_dim)
    prices: np.ndarray  # (N,) float32
    relevance: np.ndarray  # (N,) float32: hidden base relevance rel_i
    relevance_drift: np.ndarray  # (N,) float32: hidden new relevance rel_i drifts towards
    per_category: int
    shop_size: int

    def relevance_at(self, day: int, rate: float) -> np.ndarray:
        """rel_i(d) = (rel_i + c r_i) / sqrt(1 + c^2), c = rate * d: trends change which items
        are relevant while the spread of relevance (hence the base rate) stays the same."""
        c = rate * day
        return (self.relevance + np.float32(c) * self.relevance_drift) / np.float32(
            np.sqrt(1 + c * c)
        )


def build_catalogue(
    rng: np.random.Generator, n_categories: int, dims: int, p: WorldParams
) -> Catalogue:
    """Per category: log-normal prices; quality correlated with price; popularity correlated with
    the hidden relevance (so the logging ranking is partly explained by observables)."""
    shape = (n_categories, p.items_per_category)
    median = rng.uniform(*np.log(p.category_price_range), size=(n_categories, 1))
    log_price = median + p.price_log_sd * rng.standard_normal(shape)
    c = p.quality_price_corr
    quality = c * _zscore(log_price) + np.sqrt(1 - c * c) * rng.standard_normal(shape)
    relevance = rng.standard_normal(shape)
    r = p.popularity_relevance_corr
    popularity = r * relevance + np.sqrt(1 - r * r) * rng.standard_normal(shape)
    named = [-_zscore(log_price), _zscore(quality), _zscore(popularity)]
    latent = rng.standard_normal((*shape, max(dims - len(named), 0)))
    features = np.concatenate([np.stack(named, axis=-1), latent], axis=-1)[..., :dims]
    return Catalogue(
        features=np.ascontiguousarray(features.reshape(-1, dims), dtype=np.float32),
        prices=np.round(np.exp(log_price), 2).astype(np.float32).ravel(),
        relevance=(p.relevance_sd * relevance).astype(np.float32).ravel(),
        relevance_drift=(p.relevance_sd * rng.standard_normal(relevance.size)).astype(np.float32),
        per_category=p.items_per_category,
        shop_size=p.shop_size,
    )


@dataclass(frozen=True)
class Population:
    """Users with fixed attributes. Hidden fields: segment, pref_noise, intent, patience."""

    segment: np.ndarray  # (U,) int64
    attrs: np.ndarray  # (U, G) int16
    dense: np.ndarray  # (U, D) float32
    pref_noise: np.ndarray  # (U, A) float32: idiosyncratic part of theta_c
    intent: np.ndarray  # (U,) float32: purchase-intent logit offset
    patience: np.ndarray  # (U,) float32: turn-page logit offset
    segment_activity: np.ndarray  # (K,) total activity weight of each segment
    order: np.ndarray  # (U,) users sorted by segment
    keys: np.ndarray  # (U,) segment + normalised cumulative activity, in `order`

    @property
    def size(self) -> int:
        return int(self.segment.size)

    def pick(self, segment: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A user of each `segment`, with probability proportional to activity (u ~ U[0, 1))."""
        idx = np.searchsorted(self.keys, segment + u, side="right")
        return self.order[np.minimum(idx, self.size - 1)]


@dataclass(frozen=True)
class Sessions:
    """A batch of session requests of one scenario (rows are sessions)."""

    user: np.ndarray  # (L,) index into the Population
    query: np.ndarray  # (L,) query category
    time_slice: np.ndarray  # (L,) two-hour slice of the day
    start_s: np.ndarray  # (L,) float64 seconds since midnight
    shop: np.ndarray  # (L,) shop id for in-shop sessions, -1 for main search
    scenario: int  # MAIN_SEARCH or IN_SHOP

    @property
    def size(self) -> int:
        return int(self.user.size)


@dataclass(frozen=True)
class PageViews:
    """The page views of a `Sessions` batch, ordered by (session, page_index)."""

    session: np.ndarray  # (R,) row of the Sessions batch
    page_index: np.ndarray  # (R,) int16
    ts_s: np.ndarray  # (R,) float64 seconds since midnight
    action: np.ndarray  # (R, A) float32: the engine action
    items: np.ndarray  # (R, K) int64, in display order
    prices: np.ndarray  # (R, K) float32
    clicks: np.ndarray  # (R,) int16
    purchase: np.ndarray  # (R,) bool
    amount: np.ndarray  # (R,) float32: price of the item bought, 0 without purchase
    customer_action: np.ndarray  # (R,) int8 index into ACTIONS
    end_s: np.ndarray  # (L,) float64: when each session ended
    clicked_shop: np.ndarray  # (L,) shop of the last clicked item, -1 if no click


@dataclass
class _Live:
    """Per-session constants of a run, indexed by session row."""

    attrs: np.ndarray
    dense: np.ndarray
    theta: np.ndarray  # (L, A) float32 preference over ranking features
    buy_base: np.ndarray  # (L,) purchase logit before the page's attraction and index
    patience: np.ndarray  # (L,)
    pool_base: np.ndarray  # (L,) first item id of the candidate pool
    pool_size: int
    n_candidates: int
    strides: np.ndarray


class World:
    """The reference market. `seed` fixes every hidden parameter; see docs/world.md."""

    def __init__(
        self, spec: LogSpec | None = None, params: WorldParams | None = None, seed: int = 0
    ):
        self.spec = spec or LogSpec()
        self.params = params or WorldParams()
        self.seed = seed
        p, s = self.params, self.spec
        if s.action_dim <= POPULARITY:
            raise ValueError("the world needs action_dim >= 3 (cheapness, quality, popularity)")
        if min(p.main_candidates, p.shop_candidates) < s.page_size:
            raise ValueError("fewer candidates than page_size")
        rng = stream(seed, WORLD_STREAM)
        dims = max(s.action_dim, s.rerank_feature_dim)
        self.catalogue = build_catalogue(rng, s.n_query_categories, dims, p)
        self._x = np.ascontiguousarray(self.catalogue.features[:, : s.action_dim])
        self._build_segments(rng)
        self._build_preferences(rng)
        self._center_intents(stream(seed, WORLD_STREAM, 1))
        self.strides = {n: _coprimes(n) for n in (p.items_per_category, p.shop_size)}

    # --- hidden structure ---------------------------------------------------------------------
    def _build_segments(self, rng: np.random.Generator) -> None:
        p, s = self.params, self.spec
        k = len(p.segment_names)
        self._trait_means = np.stack(
            [p.segment_wealth, p.segment_activity, p.segment_taste, p.segment_thrift], axis=1
        )
        self._nominal = {
            g: rng.dirichlet(np.full(card, p.nominal_concentration), size=k)
            for g, (name, card) in enumerate(zip(s.attr_names, s.attr_cardinalities, strict=True))
            if name not in p.attr_roles
        }
        common = rng.dirichlet(np.full(s.n_query_categories, 2.0))
        own = rng.dirichlet(np.ones(s.n_query_categories), size=k)
        self._query_probs = (1 - p.query_segment_share) * common + p.query_segment_share * own
        phase = 2 * np.pi * (np.arange(N_SLICES)[None, :] - np.array(p.segment_peak_slice)[:, None])
        self._slice_mix = p.slice_mix_amplitude * np.cos(phase / N_SLICES)  # (K, 12)
        self._mix_drift = p.drift_mix_per_day * rng.standard_normal(k)

    def _build_preferences(self, rng: np.random.Generator) -> None:
        """theta_det(attrs, q) = base + sum_g T_g[attr_g] + Q[q]: structured tables for the
        trait-coded groups (wealthy and thrifty customers want opposite price signs), sparse random
        vectors of fixed norm for nominal values and queries (so the spread of utilities, hence
        the calibration, does not depend on the seed)."""
        p, s = self.params, self.spec
        a = s.action_dim
        latent = a - POPULARITY - 1  # ranking dimensions without a name
        tables, intents = [], []
        for name, card in zip(s.attr_names, s.attr_cardinalities, strict=True):
            table = np.zeros((card, a))
            z = np.linspace(-1.0, 1.0, card)
            role = p.attr_roles.get(name)
            if role == "wealth":
                table[:, [CHEAP, QUALITY]] += np.outer(z, p.pref_wealth)
            elif role == "thrift":
                table[:, [CHEAP, QUALITY]] += np.outer(z, p.pref_thrift)
            elif role == "taste":
                table[:, [QUALITY, POPULARITY]] += np.outer(z, p.pref_taste)
            elif role is None and latent > 0:
                n_dims = min(p.pref_nominal_dims, latent)
                norm = p.pref_nominal_scale.get(name, 0.1) * np.sqrt(n_dims)
                for level in range(card):
                    dims = POPULARITY + 1 + rng.choice(latent, n_dims, replace=False)
                    table[level, dims] = _fixed_norm(rng.standard_normal(n_dims), norm)
            tables.append(table)
            intents.append(p.intent_attr_sd * rng.standard_normal(card))
        self._pref_table = np.concatenate(tables).astype(np.float32)
        self._intent_table = np.concatenate(intents).astype(np.float32)
        self._attr_offsets = np.cumsum((0, *s.attr_cardinalities[:-1]))
        self._pref_base = np.zeros(a, dtype=np.float32)
        self._pref_base[[CHEAP, QUALITY, POPULARITY]] = p.pref_base
        query = rng.standard_normal((s.n_query_categories, a))
        self._pref_query = _fixed_norm(query, p.pref_query_norm).astype(np.float32)
        k = len(p.segment_names)
        self._pref_drift = _fixed_norm(rng.standard_normal((k, a)), 1.0).astype(np.float32)

    def _center_intents(self, rng: np.random.Generator, n_users: int = 20_000) -> None:
        """Shift each group's intent table to mean 0 over the population, so the random tables
        spread R2P over customers without moving the calibrated base rate with the seed."""
        attrs = self.sample_population(rng, n_users).attrs + self._attr_offsets
        for g in range(attrs.shape[1]):
            start = self._attr_offsets[g]
            stop = start + self.spec.attr_cardinalities[g]
            self._intent_table[start:stop] -= self._intent_table[attrs[:, g]].mean()

    def preference(self, attrs: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Hidden theta_det (B, action_dim): the preference a customer with these attributes and
        query has on average (users add an idiosyncratic part and the day's drift)."""
        rows = np.asarray(attrs, dtype=np.int64) + self._attr_offsets
        pref = self._pref_table[rows].sum(axis=1) + self._pref_base
        return pref + self._pref_query[np.asarray(query, dtype=np.int64)]

    def drifted(self, theta: np.ndarray, segment: np.ndarray, day: int) -> np.ndarray:
        """Preferences `day` days later: turned towards the segment's hidden drift direction,
        norm kept (so drift moves the optimum without making customers pickier):
        theta_d = |theta| * normalize(theta + r * d * |theta| * v_segment)."""
        if day == 0 or self.params.drift_pref_per_day == 0:
            return theta
        norm = np.linalg.norm(theta, axis=1, keepdims=True)
        moved = theta + self.params.drift_pref_per_day * day * norm * self._pref_drift[segment]
        return _fixed_norm(moved, 1.0) * norm

    def attribute_intent(self, attrs: np.ndarray) -> np.ndarray:
        """Hidden purchase-intent offset (B,) carried by the attributes alone."""
        rows = np.asarray(attrs, dtype=np.int64) + self._attr_offsets
        return self._intent_table[rows].sum(axis=1)

    def slice_offset(self, time_slice: np.ndarray) -> np.ndarray:
        """Diurnal purchase-logit offset of each two-hour slice (paper, Figure 5)."""
        p = self.params
        return p.slice_amplitude * np.cos(2 * np.pi * (time_slice - p.slice_peak) / N_SLICES)

    # --- customers ----------------------------------------------------------------------------
    def sample_population(self, rng: np.random.Generator, n_users: int) -> Population:
        """`n_users` customers drawn from P^c: a segment, latent traits, then correlated
        attributes (trait-coded groups are binned traits, others per-segment categoricals)."""
        p, s = self.params, self.spec
        k = len(p.segment_names)
        segment = rng.choice(k, size=n_users, p=p.segment_weights)
        traits = self._trait_means[segment] + p.trait_sd * rng.standard_normal((n_users, 4))
        attrs = np.empty((n_users, s.n_attrs), dtype=np.int16)
        for g, (name, card) in enumerate(zip(s.attr_names, s.attr_cardinalities, strict=True)):
            if name in p.attr_roles:
                t = traits[:, TRAITS.index(p.attr_roles[name])]
                noisy = t + p.attr_noise * rng.standard_normal(n_users)
                attrs[:, g] = np.minimum((sigmoid(1.6 * noisy) * card).astype(np.int64), card - 1)
            else:
                attrs[:, g] = categorical(rng, self._nominal[g][segment])
        dense = np.empty((n_users, s.dense_dim), dtype=np.float32)
        for j, name in enumerate(s.dense_names):
            noise = rng.standard_normal(n_users)
            if name in p.dense_roles:
                trait, loc, scale = p.dense_roles[name]
                value = loc + scale * (traits[:, TRAITS.index(trait)] + p.dense_noise * noise)
                dense[:, j] = sigmoid(value) if name.endswith("_rate") else value
            else:
                dense[:, j] = noise
        pref_noise = np.float32(p.pref_user_sd) * rng.standard_normal(
            (n_users, s.action_dim), dtype=np.float32
        )
        intent = (
            np.asarray(p.segment_intent)[segment]
            + self.attribute_intent(attrs)
            + p.intent_sd * rng.standard_normal(n_users)
        )
        patience = (
            p.turn_bias
            + np.asarray(p.segment_patience)[segment]
            + p.patience_sd * rng.standard_normal(n_users)
        )
        activity = np.exp(
            traits[:, TRAITS.index("activity")] + p.activity_sd * rng.standard_normal(n_users)
        )
        return _index_population(segment, attrs, dense, pref_noise, intent, patience, activity, k)

    def draw_sessions(
        self,
        pop: Population,
        n: int,
        rng: np.random.Generator,
        day: int,
        time_slice: int | None = None,
        scenario: int = MAIN_SEARCH,
    ) -> Sessions:
        """`n` session requests: a slice from the diurnal traffic profile, a segment from the
        slice's (and day's) mix, an active user of that segment, a query from the segment."""
        p = self.params
        if time_slice is None:
            slices = rng.choice(N_SLICES, size=n, p=p.traffic_profile)
        else:
            slices = np.full(n, time_slice, dtype=np.int64)
        with np.errstate(divide="ignore"):
            log_share = np.log(pop.segment_activity)[:, None] + self._slice_mix
        logits = (log_share + day * self._mix_drift[:, None]).T  # (12, K)
        mix = np.exp(logits - logits.max(axis=1, keepdims=True))
        mix /= mix.sum(axis=1, keepdims=True)
        segment = categorical(rng, mix[slices])
        user = pop.pick(segment, rng.random(n))
        query = categorical(rng, self._query_probs[pop.segment[user]])
        start = (slices + rng.random(n)) * SLICE_SECONDS
        shop = np.full(n, -1, dtype=np.int64)
        if scenario == IN_SHOP:
            shops = p.items_per_category // p.shop_size
            shop = query * shops + rng.integers(0, shops, n)
        return Sessions(user, query, slices, start, shop, scenario)

    def follow_up_in_shop(
        self, main: Sessions, views: PageViews, rng: np.random.Generator
    ) -> tuple[np.ndarray, Sessions]:
        """In-shop sessions started after main-search sessions with a click: same user and query,
        in the shop of the last clicked item. Returns (main session rows, in-shop Sessions)."""
        p = self.params
        follow = (views.clicked_shop >= 0) & (rng.random(main.size) < p.in_shop_prob)
        rows = np.flatnonzero(follow)
        start = views.end_s[rows] + rng.exponential(p.in_shop_gap_s, rows.size)
        shop = Sessions(
            main.user[rows],
            main.query[rows],
            main.time_slice[rows],
            start,
            views.clicked_shop[rows],
            IN_SHOP,
        )
        return rows, shop

    # --- pages and responses ------------------------------------------------------------------
    def _live(self, pop: Population, sessions: Sessions, day: int) -> _Live:
        p = self.params
        user = sessions.user
        attrs = pop.attrs[user]
        theta = self.drifted(
            self.preference(attrs, sessions.query) + pop.pref_noise[user], pop.segment[user], day
        )
        buy_base = (
            p.buy_bias
            + pop.intent[user]
            + self.slice_offset(sessions.time_slice)
            + p.drift_base_per_day * day
        )
        if sessions.scenario == IN_SHOP:
            buy_base = buy_base + p.in_shop_bias
            base, size, n_cand = sessions.shop * p.shop_size, p.shop_size, p.shop_candidates
        else:
            base = sessions.query * p.items_per_category
            size, n_cand = p.items_per_category, p.main_candidates
        return _Live(
            attrs,
            pop.dense[user],
            theta.astype(np.float32),
            buy_base.astype(np.float32),
            pop.patience[user],
            base,
            size,
            n_cand,
            self.strides[size],
        )

    def _candidates(self, rng: np.random.Generator, live: _Live, rows: np.ndarray) -> np.ndarray:
        """Distinct candidates from each session's pool: an arithmetic progression with a random
        start and a stride coprime with the pool size (cheap sampling without replacement)."""
        start = rng.integers(0, live.pool_size, rows.size)
        stride = live.strides[rng.integers(0, live.strides.size, rows.size)]
        offsets = start[:, None] + stride[:, None] * np.arange(live.n_candidates)
        return live.pool_base[rows, None] + offsets % live.pool_size

    def show_page(
        self, candidates: np.ndarray, action: np.ndarray, relevance: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The engine's page: the top page_size candidates by score_i = rel_i + a . x_i, best
        first. Returns (items (B, K), their features (B, K, A)). Top-k makes the response
        nonlinear in a; large |a| discards the base relevance."""
        k = self.spec.page_size
        x = np.take(self._x, candidates, axis=0)  # (B, C, A)
        score = relevance[candidates] + np.matmul(x, action[:, :, None])[..., 0]
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable")
        items = np.take_along_axis(candidates, np.take_along_axis(top, order, axis=1), axis=1)
        return items, np.take(self._x, items, axis=0)

    def utilities(
        self, theta: np.ndarray, features: np.ndarray, items: np.ndarray, relevance: np.ndarray
    ) -> np.ndarray:
        """u_j = theta_c . x_j + lambda * rel_j for the shown items (B, K)."""
        return (
            np.einsum("bka,ba->bk", features, theta)
            + self.params.relevance_weight * relevance[items]
        )

    def position_bias(self) -> np.ndarray:
        return -self.params.position_decay * np.log1p(np.arange(self.spec.page_size))

    def buy_logit(
        self, buy_base: np.ndarray, utilities: np.ndarray, page_index: int | np.ndarray
    ) -> np.ndarray:
        """Purchase logit of a page: base + kappa * log sum_j exp(u_j + pos_j) - gamma * n. The
        customer's intent depends on what the page shows AND on the page index n."""
        p = self.params
        z = utilities + self.position_bias()
        peak = z.max(axis=1)
        attraction = peak + np.log(np.exp(z - peak[:, None]).sum(axis=1))
        return buy_base + p.attraction_weight * attraction - p.page_decay * page_index

    def respond(
        self, rng: np.random.Generator, live: _Live, rows: np.ndarray, n: int, utilities: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The customer's answer to page n: (clicked (B, K) bool, bought position (B,) or -1,
        customer action (B,), clicks (B,))."""
        p = self.params
        pos = self.position_bias()
        click_p = sigmoid(p.click_bias + p.click_utility_weight * utilities + pos)
        clicked = rng.random(utilities.shape, dtype=np.float32) < click_p
        buy = rng.random(rows.size) < sigmoid(self.buy_logit(live.buy_base[rows], utilities, n))
        choice = np.argmax(utilities + pos + rng.gumbel(size=utilities.shape), axis=1)  # softmax
        clicked[buy, choice[buy]] = True  # an item is clicked before it is bought
        clicks = clicked.sum(axis=1)
        turn_logit = (
            live.patience[rows]
            + p.turn_click_weight * np.minimum(clicks, 3)
            - p.turn_page_decay * n
        )
        turn = rng.random(rows.size) < sigmoid(turn_logit)
        action = np.where(buy, BUY, np.where(turn, TURN_PAGE, LEAVE)).astype(np.int8)
        return clicked, np.where(buy, choice, -1), action, clicks

    def run(
        self,
        pop: Population,
        sessions: Sessions,
        policy: Policy,
        rng: np.random.Generator,
        day: int = 0,
    ) -> PageViews:
        """Step all sessions of the batch together; the policy sees one observation batch per page
        index. A session ends on buy or leave, or after page MaxIndex (T^c)."""
        p, s = self.params, self.spec
        if sessions.size == 0:
            raise ValueError("no sessions to run")
        live = self._live(pop, sessions, day)
        relevance = self.catalogue.relevance_at(day, p.drift_relevance_per_day)
        rows = np.arange(sessions.size)
        t = sessions.start_s.astype(np.float64)
        last_clicks = np.zeros(sessions.size, dtype=np.int64)
        clicked_shop = np.full(sessions.size, -1, dtype=np.int64)
        steps = []
        for n in range(s.max_index + 1):
            if rows.size == 0:
                break
            obs = encode_observation(
                s,
                live.attrs[rows],
                sessions.query[rows],
                live.dense[rows],
                np.full(rows.size, n),
                last_clicks[rows],
            )
            action = _check_action(policy(obs), rows.size, s.action_dim)
            items, x = self.show_page(self._candidates(rng, live, rows), action, relevance)
            u = self.utilities(live.theta[rows], x, items, relevance)
            clicked, bought, customer, clicks = self.respond(rng, live, rows, n, u)
            has_click = clicks > 0
            last_pos = s.page_size - 1 - np.argmax(clicked[:, ::-1], axis=1)
            last_item = items[np.arange(rows.size), last_pos]
            clicked_shop[rows[has_click]] = last_item[has_click] // p.shop_size
            bought_item = items[np.arange(rows.size), np.maximum(bought, 0)]
            amount = np.where(bought >= 0, self.catalogue.prices[bought_item], 0.0)
            steps.append(
                (
                    rows,
                    np.full(rows.size, n),
                    t[rows].copy(),
                    action,
                    items,
                    clicks,
                    amount.astype(np.float32),
                    customer,
                )
            )
            gap_min, gap_mean = p.page_gap_s
            t[rows] += gap_min + rng.exponential(gap_mean, rows.size) + p.click_dwell_s * clicks
            last_clicks[rows] = clicks
            rows = rows[customer == TURN_PAGE]
        return self._collect(steps, t, clicked_shop)

    def _collect(
        self, steps: list[tuple], end_s: np.ndarray, clicked_shop: np.ndarray
    ) -> PageViews:
        cols = [np.concatenate(c) for c in zip(*steps, strict=True)]
        session, page, ts, action, items, clicks, amount, customer = cols
        order = np.argsort(session, kind="stable")  # steps are page-major; make sessions contiguous
        return PageViews(
            session=session[order],
            page_index=page[order].astype(np.int16),
            ts_s=ts[order],
            action=action[order],
            items=items[order],
            prices=self.catalogue.prices[items[order]],
            clicks=clicks[order].astype(np.int16),
            purchase=customer[order] == BUY,
            amount=amount[order],
            customer_action=customer[order],
            end_s=end_s,
            clicked_shop=clicked_shop,
        )


def _check_action(action: np.ndarray, batch: int, dim: int) -> np.ndarray:
    action = np.asarray(action, dtype=np.float32)
    if action.shape != (batch, dim):
        raise ValueError(f"policy returned shape {action.shape}, expected {(batch, dim)}")
    if not np.isfinite(action).all():
        raise ValueError("policy returned non-finite actions")
    return action


def _index_population(
    segment: np.ndarray,
    attrs: np.ndarray,
    dense: np.ndarray,
    pref_noise: np.ndarray,
    intent: np.ndarray,
    patience: np.ndarray,
    activity: np.ndarray,
    k: int,
) -> Population:
    """Sort users by segment and build keys so `Population.pick` is one searchsorted."""
    order = np.argsort(segment, kind="stable")
    seg_sorted = segment[order]
    totals = np.bincount(segment, weights=activity, minlength=k)
    cum = np.cumsum(activity[order])
    starts = np.concatenate(([0.0], np.cumsum(totals)[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        within = (cum - starts[seg_sorted]) / totals[seg_sorted]
    within[np.flatnonzero(np.diff(seg_sorted, append=k))] = 1.0  # exact end of each segment
    return Population(
        segment=segment,
        attrs=attrs,
        dense=dense,
        pref_noise=pref_noise,
        intent=intent.astype(np.float32),
        patience=patience.astype(np.float32),
        segment_activity=totals,
        order=order,
        keys=seg_sorted + within,
    )
