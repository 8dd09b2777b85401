"""`WorldParams`: every hidden knob of the reference world, with its default (one source of truth).

The symbols in the descriptions are those of docs/world.md. Defaults are calibrated so that the
logging policy sees the paper's scale (R2P ~0.09, 0.08-0.10 over the day, a few pages a session);
docs/world.md records the calibration run.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

N_SLICES = 12  # two-hour slices of a day (paper, Figure 5)
TRAITS = ("wealth", "activity", "taste", "thrift")  # latent customer traits


class WorldParams(BaseModel):
    """Parameters of the hidden market. Learners never read them; they only see the logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- catalogue ----------------------------------------------------------------------------
    items_per_category: int = Field(
        2000, ge=100, description="Items in each query category's catalogue (the main-search pool)."
    )
    shop_size: int = Field(
        40,
        ge=10,
        description="Items per shop; a category's items are split into shops of this "
        "size, the in-shop pool. Must divide items_per_category.",
    )
    category_price_range: tuple[float, float] = Field(
        (15.0, 400.0), description="Median item price of a category is log-uniform in this range."
    )
    price_log_sd: float = Field(0.6, gt=0, description="Std of log price within a category.")
    quality_price_corr: float = Field(
        0.5, ge=0, lt=1, description="Correlation of an item's quality with its log price."
    )
    relevance_sd: float = Field(
        1.0, gt=0, description="Std of the hidden base relevance rel_i, the engine's base score."
    )
    popularity_relevance_corr: float = Field(
        0.6, ge=0, lt=1, description="Correlation of the observable popularity feature with rel_i."
    )

    # --- engine page --------------------------------------------------------------------------
    main_candidates: int = Field(
        30,
        ge=1,
        description="Candidates retrieved for a main-search page; the top page_size by "
        "score_i = rel_i + a.x_i are shown.",
    )
    shop_candidates: int = Field(
        24, ge=1, description="Candidates retrieved from the shop for an in-shop page."
    )

    # --- customer population ------------------------------------------------------------------
    segment_names: tuple[str, ...] = Field(
        (
            "bargain_hunter",
            "quality_seeker",
            "young_browser",
            "family_shopper",
            "loyal_member",
            "occasional",
        ),
        description="Latent customer segments (never logged; they correlate the attributes).",
    )
    segment_weights: tuple[float, ...] = Field(
        (0.22, 0.14, 0.20, 0.18, 0.12, 0.14), description="Share of users in each segment."
    )
    segment_wealth: tuple[float, ...] = Field(
        (-1.0, 1.2, -0.4, 0.2, 0.6, 0.0), description="Mean wealth trait per segment."
    )
    segment_activity: tuple[float, ...] = Field(
        (0.3, 0.0, 0.6, 0.0, 0.8, -1.0), description="Mean activity trait per segment."
    )
    segment_taste: tuple[float, ...] = Field(
        (-0.8, 1.0, -0.2, 0.2, 0.8, 0.0), description="Mean taste trait (quality, brands)."
    )
    segment_thrift: tuple[float, ...] = Field(
        (1.0, -1.0, 0.3, 0.5, -0.3, 0.0), description="Mean thrift (price focus) trait per segment."
    )
    segment_intent: tuple[float, ...] = Field(
        (0.1, 0.1, -0.3, 0.2, 0.35, -0.3),
        description="Purchase-intent logit offset per segment (R2P differs by customer, Figure 4).",
    )
    segment_patience: tuple[float, ...] = Field(
        (0.5, -0.3, 0.7, 0.2, 0.0, -0.6), description="Turn-page logit offset per segment."
    )
    segment_peak_slice: tuple[int, ...] = Field(
        (10, 7, 11, 5, 9, 6), description="Time slice where each segment's share of traffic peaks."
    )
    trait_sd: float = Field(0.6, gt=0, description="Within-segment std of each latent trait.")
    attr_roles: dict[str, str] = Field(
        {
            "history_turnover_level": "wealth",
            "purchase_power_level": "wealth",
            "active_days_level": "activity",
            "brand_loyalty_level": "taste",
            "is_member": "activity",
            "price_preference": "thrift",
        },
        description="Attribute groups that are ordinal codes of a latent trait (wealth, activity, "
        "taste, thrift); other groups are nominal, drawn from a per-segment categorical.",
    )
    attr_noise: float = Field(
        0.5, ge=0, description="Noise added to the trait before an ordinal attribute is binned."
    )
    nominal_concentration: float = Field(
        0.6,
        gt=0,
        description="Dirichlet concentration of the per-segment nominal distributions "
        "(small = segments are easy to tell apart from their nominal attributes).",
    )
    dense_roles: dict[str, tuple[str, float, float]] = Field(
        {"history_turnover_log": ("wealth", 6.0, 1.0), "activity_rate": ("activity", 0.0, 1.0)},
        description="Dense feature -> (trait, location, scale): value = loc + scale * (trait + "
        "noise); names ending in '_rate' go through a sigmoid. Unlisted names are pure noise.",
    )
    dense_noise: float = Field(0.5, ge=0, description="Noise std of the dense features.")
    sessions_per_user: float = Field(
        4.0, ge=1, description="Mean sessions per user: a log of S sessions has S / this users."
    )
    activity_sd: float = Field(
        0.8, ge=0, description="Log-normal noise of a user's activity weight (heavy-tailed usage)."
    )
    query_segment_share: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Weight of the segment-specific query distribution in the mix "
        "with the global one.",
    )

    # --- preferences theta_c over ranking features --------------------------------------------
    pref_base: tuple[float, float, float] = Field(
        (0.2, 0.3, 0.2), description="Everyone's preference for (cheapness, quality, popularity)."
    )
    pref_wealth: tuple[float, float] = Field(
        (-0.45, 0.25),
        description="Per wealth-coded attribute: (cheapness, quality) weight times "
        "the centred level in [-1, 1]; wealthy customers want expensive, good items.",
    )
    pref_thrift: tuple[float, float] = Field(
        (0.5, -0.2),
        description="Per thrift-coded attribute: (cheapness, quality) weight times "
        "the centred level; thrifty customers want cheap items (opposite sign to the wealthy).",
    )
    pref_taste: tuple[float, float] = Field(
        (0.3, 0.2),
        description="Per taste-coded attribute: (quality, popularity) weight times the "
        "centred level.",
    )
    pref_nominal_scale: dict[str, float] = Field(
        {"customer_category": 0.6, "age_band": 0.3, "gender": 0.3, "device": 0.2, "region": 0.1},
        description="Std of the sparse preference embedding of each nominal attribute value; "
        "unlisted nominal groups use 0.1.",
    )
    pref_nominal_dims: int = Field(
        3,
        ge=1,
        description="Ranking dimensions (beyond the interpretable 3) each nominal "
        "attribute value has a preference on.",
    )
    pref_query_norm: float = Field(
        0.5, ge=0, description="Norm of each query category's preference shift (random direction)."
    )
    pref_user_sd: float = Field(0.25, ge=0, description="Std of a user's idiosyncratic preference.")
    relevance_weight: float = Field(
        1.5, ge=0, description="lambda: weight of the base relevance rel_i in the utility u_i."
    )

    # --- page response ------------------------------------------------------------------------
    buy_bias: float = Field(
        -5.22, description="b0: purchase logit intercept (calibrated to R2P ~0.09)."
    )
    in_shop_bias: float = Field(0.0, description="Extra purchase logit of in-shop pages.")
    attraction_weight: float = Field(
        0.5, ge=0, description="kappa: weight of the page attraction log sum_j exp(u_j + pos_j)."
    )
    page_decay: float = Field(
        0.1, description="gamma: purchase logit lost per page index n (intent fades with pages)."
    )
    intent_attr_sd: float = Field(
        0.12, ge=0, description="Std of the purchase-intent offset of each attribute value."
    )
    intent_sd: float = Field(0.3, ge=0, description="Std of a user's idiosyncratic intent.")
    position_decay: float = Field(
        0.35, ge=0, description="Examination bias: pos_j = -position_decay * log(1 + j)."
    )
    click_bias: float = Field(-4.45, description="c0: click logit intercept.")
    click_utility_weight: float = Field(0.8, ge=0, description="Weight of u_j in the click logit.")
    turn_bias: float = Field(1.0, description="Turn-page logit intercept (patience).")
    patience_sd: float = Field(0.8, ge=0, description="Std of a user's patience (long tail).")
    turn_click_weight: float = Field(
        0.3, description="Turn-page logit per click on the page (up to 3 clicks)."
    )
    turn_page_decay: float = Field(0.15, description="Turn-page logit lost per page index n.")

    # --- time of day --------------------------------------------------------------------------
    traffic_profile: tuple[float, ...] = Field(
        (0.045, 0.02, 0.015, 0.03, 0.07, 0.09, 0.1, 0.09, 0.1, 0.12, 0.17, 0.15),
        description="Share of sessions in each two-hour slice (00-02, 02-04, ...).",
    )
    slice_amplitude: float = Field(
        0.15, ge=0, description="Amplitude of the diurnal purchase-logit cosine."
    )
    slice_peak: float = Field(10.5, description="Slice where the purchase logit peaks.")
    slice_mix_amplitude: float = Field(
        0.4, ge=0, description="Amplitude of the diurnal cosine in each segment's traffic share."
    )
    page_gap_s: tuple[float, float] = Field(
        (2.0, 10.0), description="Seconds between page views: minimum + exponential mean."
    )
    click_dwell_s: float = Field(6.0, ge=0, description="Extra seconds per click on a page.")

    # --- in-shop scenario ---------------------------------------------------------------------
    in_shop_prob: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Probability that a main-search session with a click is "
        "followed by an in-shop session in the shop of the last clicked item.",
    )
    in_shop_gap_s: float = Field(20.0, ge=0, description="Mean seconds before the in-shop session.")

    # --- drift (day d after the log's first day) ----------------------------------------------
    drift_base_per_day: float = Field(
        -0.004, description="Purchase logit change per day (base rate drift)."
    )
    drift_pref_per_day: float = Field(
        0.02,
        ge=0,
        description="Per day, preferences turn towards the segment's hidden direction "
        "by this fraction of their norm (norm kept): about 1 degree a day, 31 degrees in 30 days.",
    )
    drift_mix_per_day: float = Field(
        0.01, ge=0, description="Segment traffic log-share change per day along a hidden direction."
    )
    drift_relevance_per_day: float = Field(
        0.01,
        ge=0,
        description="c per day: rel_i(d) = (rel_i + c d r_i) / sqrt(1 + (c d)^2), "
        "r_i a hidden new relevance (item trends change, the spread does not).",
    )

    # --- logging policy -----------------------------------------------------------------------
    logging_scale: float = Field(
        0.5,
        gt=0,
        description="Expected norm of the logging policy's random action "
        "a ~ N(0, (scale^2 / action_dim) I), small next to relevance_sd (paper's random bucket).",
    )

    # --- re-ranking lists ---------------------------------------------------------------------
    rerank_rate: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Probability that a main-search session issues one re-ranking request.",
    )
    rerank_sizes: tuple[int, ...] = Field(
        (17, 30, 50, 100), description="Possible candidate-list sizes n."
    )
    rerank_size_probs: tuple[float, ...] = Field(
        (0.3, 0.35, 0.25, 0.1), description="Probabilities of the candidate-list sizes."
    )
    rerank_shown: int = Field(17, ge=1, description="k: items shown from each candidate list.")
    rerank_logging_noise: float = Field(
        1.0, ge=0, description="Std of the noise the logging re-ranker adds to rel_i."
    )
    rerank_pay_bias: float = Field(-4.3, description="Pay logit intercept of a shown item.")
    rerank_click_bias: float = Field(-2.2, description="Click logit intercept of a shown item.")
    rerank_position_decay: float = Field(
        0.5, ge=0, description="Position bias in lists: -decay * log(1 + position)."
    )
    rerank_similarity_weight: float = Field(
        1.5,
        ge=0,
        description="Pay logit lost per unit of the max cosine similarity to an item "
        "shown above (redundancy).",
    )
    rerank_anchor_weight: float = Field(
        0.8,
        ge=0,
        description="Pay logit per unit of (mean log price above - own log price): "
        "price anchoring.",
    )

    @model_validator(mode="after")
    def _check(self) -> WorldParams:
        k = len(self.segment_names)
        per_segment = (
            self.segment_weights,
            self.segment_wealth,
            self.segment_activity,
            self.segment_taste,
            self.segment_thrift,
            self.segment_intent,
            self.segment_patience,
            self.segment_peak_slice,
        )
        if any(len(v) != k for v in per_segment):
            raise ValueError("every segment_* tuple needs one value per segment")
        if len(self.traffic_profile) != N_SLICES:
            raise ValueError(f"traffic_profile needs {N_SLICES} values")
        if self.items_per_category % self.shop_size:
            raise ValueError("shop_size must divide items_per_category")
        if self.main_candidates > self.items_per_category or self.shop_candidates > self.shop_size:
            raise ValueError("more candidates than items in the pool")
        if len(self.rerank_sizes) != len(self.rerank_size_probs):
            raise ValueError("rerank_sizes and rerank_size_probs differ in length")
        sizes = self.rerank_sizes
        if min(sizes) < self.rerank_shown or max(sizes) > self.items_per_category:
            raise ValueError("rerank sizes must lie in [rerank_shown, items_per_category]")
        for probs in (self.segment_weights, self.traffic_profile, self.rerank_size_probs):
            if min(probs) < 0 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                raise ValueError("probability tuples must be non-negative and sum to 1")
        bad = {r for r in self.attr_roles.values()} | {r[0] for r in self.dense_roles.values()}
        if bad - set(TRAITS):
            raise ValueError(f"unknown traits {sorted(bad - set(TRAITS))}; use {TRAITS}")
        return self
