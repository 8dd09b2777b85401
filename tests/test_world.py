"""The reference world: determinism, contract, calibration, and the properties the paper needs."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipeline.logs.observation import observation_dim
from pipeline.logs.schema import (
    PAGE_VIEWS,
    RERANK_LISTS,
    LogSpec,
    page_views_schema,
    read_contract,
    rerank_lists_schema,
)
from pipeline.stats import ratio_estimate
from pipeline.world import (
    LoggingPolicy,
    RerankMarket,
    World,
    WorldParams,
    deploy,
    generate_logs,
)
from pipeline.world import generate as generate_module
from pipeline.world.market import CHEAP

SEED = 7
SESSIONS = 60_000
SPEC = LogSpec()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("logs")
    summary = generate_logs(out, SESSIONS, seed=SEED)
    pages = ds.dataset(out / PAGE_VIEWS, partitioning="hive").to_table().to_pandas()
    pages = pages.sort_values(["session_id", "page_index"], kind="stable").reset_index(drop=True)
    rerank = ds.dataset(out / RERANK_LISTS, partitioning="hive").to_table()
    return summary, pages, rerank


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=SEED)


def _decode(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(attrs, query) back from the one-hot observation."""
    bounds = np.cumsum((0, *SPEC.attr_cardinalities))
    attrs = np.stack([obs[:, a:b].argmax(1) for a, b in itertools.pairwise(bounds)], axis=1)
    return attrs, obs[:, bounds[-1] : bounds[-1] + SPEC.n_query_categories].argmax(1)


def _constant(action: np.ndarray):
    return lambda obs: np.tile(action.astype(np.float32), (obs.shape[0], 1))


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def _disjoint(a, b) -> bool:
    return a.ci_high < b.ci_low or b.ci_high < a.ci_low


# --- determinism and the contract ---------------------------------------------------------------
def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path):
    runs = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_logs(runs[name], 1500, days=2, seed=seed)
    first = _hashes(runs["a"])
    assert len(first) == 4  # two tables x two dates
    assert first == _hashes(runs["b"])
    assert set(first) == set(_hashes(runs["c"]))
    assert all(first[k] != v for k, v in _hashes(runs["c"]).items())


def test_part_files_and_row_groups_do_not_change_the_rows(tmp_path, monkeypatch):
    whole = generate_logs(tmp_path / "whole", 3000, seed=1)
    monkeypatch.setattr(generate_module, "ROW_GROUP_ROWS", 1000)
    monkeypatch.setattr(generate_module, "ROWS_PER_FILE", 3000)
    split = generate_logs(tmp_path / "split", 3000, seed=1)
    parts = sorted((tmp_path / "split" / PAGE_VIEWS / "date=2026-01-01").glob("part-*.parquet"))
    assert len(parts) == -(-split.page_views // 3000) > 1
    for path in parts:
        meta = pq.ParquetFile(path).metadata
        assert all(meta.row_group(i).num_rows <= 1000 for i in range(meta.num_row_groups))
    read = [ds.dataset(s.out / PAGE_VIEWS).to_table() for s in (whole, split)]
    assert read[0].equals(read[1])


def test_files_follow_the_contract(logs):
    summary, pages, rerank = logs
    expected = {PAGE_VIEWS: page_views_schema(SPEC), RERANK_LISTS: rerank_lists_schema(SPEC)}
    assert summary.files
    for path in summary.files:
        table_name = path.parent.parent.name
        assert path.parent.name == "date=2026-01-01"
        schema = pq.read_schema(path)
        assert read_contract(schema, str(path)) == (table_name, SPEC)
        assert schema.equals(expected[table_name])  # list item names follow parquet's
        assert schema.metadata == expected[table_name].metadata
    assert len(pages) == summary.page_views
    assert set(pages["customer_action"]) <= {"buy", "turn_page", "leave"}
    assert (pages["purchase"] == (pages["customer_action"] == "buy")).all()
    assert ((pages["purchase_amount"] > 0) == pages["purchase"]).all()
    bought = pages[pages["purchase"]]
    assert all(
        amount in prices
        for amount, prices in zip(bought["purchase_amount"], bought["item_prices"], strict=True)
    )
    assert rerank.num_rows == summary.rerank_requests > 0
    k = WorldParams().rerank_shown
    for row in rerank.slice(0, 50).to_pylist():
        n = len(row["candidate_item_ids"])
        assert n in WorldParams().rerank_sizes
        assert len(row["candidate_features"]) == len(row["candidate_prices"]) == n
        assert len(row["shown_order"]) == len(row["click_labels"]) == len(row["pay_labels"]) == k
        assert len(set(row["shown_order"])) == k and max(row["shown_order"]) < n
        assert all(c >= p for c, p in zip(row["click_labels"], row["pay_labels"], strict=True))


def test_refuses_to_write_over_existing_logs(tmp_path):
    generate_logs(tmp_path, 100)
    with pytest.raises(FileExistsError):
        generate_logs(tmp_path, 100)


# --- calibration --------------------------------------------------------------------------------
def test_r2p_and_sessions_are_calibrated(logs):
    summary, pages, _ = logs
    assert 0.08 <= summary.r2p <= 0.10
    assert summary.r2p == pytest.approx(pages["purchase"].mean())
    lengths = pages.groupby("session_id").size()
    assert 2.5 <= lengths.mean() <= 4.0
    assert lengths.max() <= SPEC.max_index + 1
    assert (lengths >= 5).mean() > 0.1  # a long tail
    first_page = pages.groupby("session_id")["page_index"].agg(["min", "max", "size"])
    assert (first_page["min"] == 0).all() and (first_page["max"] + 1 == first_page["size"]).all()
    last = pages.groupby("session_id").tail(1)
    ends = last["customer_action"].isin(["buy", "leave"]) | (last["page_index"] == SPEC.max_index)
    assert ends.all()
    assert not pages.drop(last.index)["customer_action"].isin(["buy", "leave"]).any()


def test_r2p_varies_over_the_day_like_figure_5(logs):
    _, pages, _ = logs
    slice_of = pages["ts"].dt.hour // 2
    by_slice = pages.groupby(slice_of)["purchase"].mean()
    assert len(by_slice) == 12
    assert by_slice.between(0.07, 0.11).all()
    morning = pages["purchase"][slice_of.between(3, 6)].mean()  # 06:00-14:00
    evening = pages["purchase"][slice_of.between(8, 11)].mean()  # 16:00-24:00
    assert 0.075 <= morning <= 0.09 < evening <= 0.105


def test_logging_actions_have_small_norms(logs):
    _, pages, _ = logs
    norms = np.linalg.norm(np.stack(pages["engine_action"].to_numpy()), axis=1)
    scale = WorldParams().logging_scale
    assert norms.mean() == pytest.approx(scale, rel=0.05)
    assert np.quantile(norms, 0.99) < 1.6 * scale
    actions = LoggingPolicy(SPEC, seed=0)(np.zeros((5, observation_dim(SPEC)), np.float32))
    assert actions.shape == (5, SPEC.action_dim) and actions.dtype == np.float32


# --- the customer's response --------------------------------------------------------------------
def test_purchase_intent_depends_on_page_and_page_index(world, logs):
    base = np.zeros(4, dtype=np.float32)
    good, bad = np.full((4, SPEC.page_size), 1.0), np.full((4, SPEC.page_size), -1.0)
    assert (world.buy_logit(base, good, 0) > world.buy_logit(base, bad, 0)).all()
    assert (world.buy_logit(base, good, 0) > world.buy_logit(base, good, 5)).all()
    _, pages, _ = logs
    by_page = pages.groupby("page_index")["purchase"].mean()
    assert by_page[0] > by_page[3] > by_page[6]


def test_no_constant_action_is_near_optimal(world):
    def oracle(obs):  # built from hidden parameters: rank by the customer's true utility
        return 0.5 * world.preference(*_decode(obs)).astype(np.float32)

    rng = np.random.default_rng(0)
    pop = world.sample_population(rng, 5000)
    sessions = world.draw_sessions(pop, 20_000, rng, 0)
    mean = world.preference(pop.attrs[sessions.user], sessions.query).mean(axis=0)
    best = deploy(world, oracle, 30_000).r2p
    for action in (np.zeros(SPEC.action_dim), 0.5 * mean, mean):
        constant = deploy(world, _constant(action), 30_000).r2p
        assert best.ci_low > constant.ci_high
        assert best.value > 1.08 * constant.value


def test_segments_want_opposite_price_weights(world):
    cheap = np.zeros(SPEC.action_dim)
    cheap[CHEAP] = 1.0
    power = SPEC.attr_names.index("purchase_power_level")

    def by_power(obs):  # thrifty (low purchase power) customers get cheap items first
        sign = np.where(_decode(obs)[0][:, power] < 4, 1.0, -1.0)
        return (sign[:, None] * cheap).astype(np.float32)

    context = deploy(world, by_power, 30_000).r2p
    for sign in (1.0, -1.0):
        assert context.ci_low > deploy(world, _constant(sign * cheap), 30_000).r2p.ci_high


def test_large_norms_throw_base_relevance_away(world):
    direction = np.zeros(SPEC.action_dim)
    direction[[0, 1, 2]] = (0.4, 0.2, 0.2)
    small = deploy(world, _constant(direction), 30_000).r2p
    large = deploy(world, _constant(30 * direction), 30_000).r2p
    assert large.ci_high < small.ci_low


# --- drift, scenarios, candidate lists ----------------------------------------------------------
def test_drift_changes_the_world_a_month_later(world):
    policy = LoggingPolicy(SPEC, seed=1)
    today, month = (deploy(world, policy, 30_000, day=d).r2p for d in (0, 30))
    assert _disjoint(today, month)
    still = World(
        params=WorldParams(
            drift_base_per_day=0,
            drift_pref_per_day=0,
            drift_mix_per_day=0,
            drift_relevance_per_day=0,
        ),
        seed=SEED,
    )
    today, month = (deploy(still, policy, 30_000, day=d).r2p for d in (0, 30))
    assert not _disjoint(today, month)


def test_time_slice_changes_r2p(world):
    policy = LoggingPolicy(SPEC, seed=2)
    morning, evening = (deploy(world, policy, 20_000, time_slice=s).r2p for s in (4, 10))
    assert morning.ci_high < evening.ci_low


def test_in_shop_sessions_share_customers_with_main_search(logs):
    summary, pages, _ = logs
    shop = pages[pages["scenario"] == "in_shop"]
    main = pages[pages["scenario"] == "main_search"]
    assert summary.in_shop_sessions == shop["session_id"].nunique() > 0.1 * SESSIONS
    main_first = main.groupby("session_id").first()
    main_last = main.groupby("session_id")["ts"].max()
    shop_first = shop.groupby("session_id").first()
    origin = shop_first.index - SESSIONS
    assert (shop_first["user_id"].to_numpy() == main_first.loc[origin, "user_id"].to_numpy()).all()
    for column in ("customer_attrs", "customer_dense"):
        assert all(
            np.array_equal(a, b)
            for a, b in zip(shop_first[column], main_first.loc[origin, column], strict=True)
        )
    assert (shop_first["ts"].to_numpy() >= main_last.loc[origin].to_numpy()).all()
    shop_size = WorldParams().shop_size
    shops = shop.assign(shop=[set(ids // shop_size) for ids in shop["item_ids"]])
    assert (shops.groupby("session_id")["shop"].agg(lambda s: len(set().union(*s))) == 1).all()
    assert main["session_id"].max() < SESSIONS <= shop["session_id"].min()


def test_rerank_purchase_depends_on_the_items_above(world, logs):
    market = RerankMarket(world)
    _, _, rerank = logs
    rows = [r for r in rerank.slice(0, 400).to_pylist() if len(r["candidate_item_ids"]) == 30]
    attrs = np.array([r["customer_attrs"] for r in rows])
    query = np.array([r["query_category"] for r in rows])
    feats = np.array([r["candidate_features"] for r in rows])
    prices = np.array([r["candidate_prices"] for r in rows])
    order = np.array([r["shown_order"] for r in rows], dtype=np.int64)
    probs = market.true_pay_probs(attrs, query, feats, prices, order)
    # same item at position 5 and same items below it; only the items above change
    unused = np.array([np.setdiff1d(np.arange(30), o)[:5] for o in order])
    above_changed = order.copy()
    above_changed[:, :5] = unused
    changed = market.true_pay_probs(attrs, query, feats, prices, above_changed)
    assert not np.allclose(changed[:, 5], probs[:, 5])
    below_changed = order.copy()
    below_changed[:, 6:11] = unused
    same = market.true_pay_probs(attrs, query, feats, prices, below_changed)
    np.testing.assert_allclose(same[:, :6], probs[:, :6])
    paid, gmv = market.expected_purchases_and_gmv(attrs, query, feats, prices, order)
    np.testing.assert_allclose(paid, probs.sum(axis=1))
    assert (gmv > 0).all()
    # the logged labels come from this model
    logged = np.array([r["pay_labels"] for r in rows])
    assert logged.mean() == pytest.approx(probs.mean(), abs=4 * np.sqrt(probs.mean() / probs.size))


# --- deployment ---------------------------------------------------------------------------------
def test_deploy_reproduces_the_logged_r2p(world, logs):
    _, pages, _ = logs
    main = pages[pages["scenario"] == "main_search"]
    report = deploy(world, LoggingPolicy(SPEC, seed=5), 40_000, confidence=0.99)
    users = main.groupby("user_id")["purchase"].agg(["sum", "size"]).to_numpy(float)
    logged = ratio_estimate(users[:, 0], users[:, 1], NormalDist().inv_cdf(0.995))
    # both CIs are clustered by user, so they carry the spread of each finite user population
    margin = np.hypot(report.r2p.ci_high - report.r2p.value, logged.ci_high - logged.value)
    assert abs(logged.value - report.r2p.value) < margin
    assert report.r2p.ci_high - report.r2p.ci_low < 0.01
    assert report.customers == 40_000 and report.scenario == "main_search"
    flat = report.as_dict()
    assert flat["r2p"] == report.r2p.value and flat["tt_ci_high"] == report.tt.ci_high
    assert {"ctr", "tv_ci_low", "page_views", "day"} <= set(flat)
    assert report.tv.value <= report.page_views and report.tt.value > report.tv.value


def test_deploy_calls_the_policy_once_per_step_on_encoded_observations(world):
    calls = []

    def policy(obs):
        calls.append(obs.copy())
        return np.zeros((obs.shape[0], SPEC.action_dim), np.float32)

    report = deploy(world, policy, 1000, batch_size=500, scenario="in_shop", time_slice=3)
    assert 2 <= len(calls) <= 2 * (SPEC.max_index + 1)
    assert all(c.shape[1] == observation_dim(SPEC) and c.dtype == np.float32 for c in calls)
    assert sum(len(c) for c in calls) == report.page_views
    first = calls[0]
    assert first.shape[0] == 500 and (first[:, -2:] == 0).all()  # page 0, no clicks yet
    assert np.allclose(calls[1][:, -2], 1 / SPEC.max_index)
    with pytest.raises(ValueError):
        deploy(world, lambda obs: np.zeros((obs.shape[0], 3)), 10)


def test_other_log_specs_work(tmp_path):
    spec = LogSpec(
        attr_names=("a", "purchase_power_level"),
        attr_cardinalities=(3, 4),
        n_query_categories=3,
        dense_names=("x",),
        action_dim=6,
        page_size=5,
        max_index=4,
        scenarios=("main_search",),
        rerank_feature_dim=10,
    )
    summary = generate_logs(tmp_path, 800, spec=spec)
    for path in summary.files:
        assert read_contract(pq.read_schema(path), str(path))[1] == spec
    pages = ds.dataset(tmp_path / PAGE_VIEWS).to_table().to_pandas()
    assert set(pages["scenario"]) == {"main_search"} and summary.in_shop_sessions == 0
    assert pages.groupby("session_id").size().max() <= spec.max_index + 1
    report = deploy(World(spec), LoggingPolicy(spec), 500)
    assert 0 < report.r2p.value < 1


def test_params_are_documented_frozen_and_checked():
    assert all(f.description for f in WorldParams.model_fields.values())
    with pytest.raises(ValidationError):
        WorldParams(unknown=1)
    with pytest.raises(ValidationError):
        WorldParams(traffic_profile=(1.0,))
    with pytest.raises(ValidationError):
        WorldParams().buy_bias = 0.0
