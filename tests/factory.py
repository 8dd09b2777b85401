"""Hand-made, contract-valid page views and re-ranking requests for ingestion tests
(independent of the world)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.logs.schema import LogSpec, page_views_schema, rerank_lists_schema

SPEC = LogSpec()


def page_views(sessions: int, pages: int = 3, seed: int = 0, first_session: int = 0) -> pa.Table:
    """`sessions` sessions of `pages` page views each (turn_page, ..., then buy or leave)."""
    rng = np.random.default_rng(seed)
    n = sessions * pages
    sid = np.repeat(np.arange(first_session, first_session + sessions), pages)
    page = np.tile(np.arange(pages), sessions)
    last = page == pages - 1
    buys = np.repeat(rng.random(sessions) < 0.3, pages) & last
    action = np.where(last, np.where(buys, "buy", "leave"), "turn_page")
    prices = rng.uniform(1, 100, (n, SPEC.page_size)).astype(np.float32)
    attrs = np.stack([rng.integers(0, c, n) for c in SPEC.attr_cardinalities], axis=1)
    base = np.datetime64("2026-01-01T08:00:00", "ms")
    columns = {
        "session_id": sid,
        "user_id": sid // 2 + 1000,
        "ts": (base + (sid * 60_000 + page * 5_000).astype("timedelta64[ms]")).astype(
            "datetime64[ms]"
        ),
        "scenario": ["main_search"] * n,
        "query_category": rng.integers(0, SPEC.n_query_categories, n).astype(np.int16),
        "customer_attrs": list(attrs.astype(np.int16)),
        "customer_dense": list(rng.normal(size=(n, SPEC.dense_dim)).astype(np.float32)),
        "page_index": page.astype(np.int16),
        "engine_action": list(rng.normal(0, 0.01, (n, SPEC.action_dim)).astype(np.float32)),
        "item_ids": list(rng.integers(0, 10_000, (n, SPEC.page_size))),
        "item_prices": list(prices),
        "num_clicks": rng.integers(0, 4, n).astype(np.int16),
        "purchase": buys,
        "purchase_amount": np.where(buys, prices[:, 0], 0).astype(np.float32),
        "customer_action": action,
    }
    schema = page_views_schema(SPEC)
    arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
    ts = pa.array(columns["ts"]).cast(schema.field("ts").type)
    arrays[schema.get_field_index("ts")] = ts
    return pa.Table.from_arrays(arrays, schema=schema)


def write(
    table: pa.Table,
    root: Path,
    date: datetime.date = datetime.date(2026, 1, 1),
    name: str = "part-00000.parquet",
    row_group_size: int | None = None,
    table_name: str = "page_views",
) -> Path:
    path = root / table_name / f"date={date.isoformat()}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def rerank_lists(
    requests: int,
    n: int | tuple[int, ...] = 20,
    k: int = 17,
    seed: int = 0,
    first_request: int = 0,
) -> pa.Table:
    """`requests` contract-valid re-ranking requests (ids from `first_request` on): n candidates
    each (a tuple of sizes is cycled over the requests), distinct item ids, positive prices, k
    distinct candidates shown, 0/1 click and pay labels (a pay only on a clicked position)."""
    rng = np.random.default_rng(seed)
    sizes = np.resize(np.atleast_1d(np.asarray(n, dtype=np.int64)), requests)
    offsets = pa.array(np.concatenate(([0], np.cumsum(sizes))), pa.int32())
    shown_offsets = pa.array(np.arange(requests + 1, dtype=np.int32) * k)
    ids = np.concatenate([rng.choice(100_000, size, replace=False) for size in sizes])
    shown = np.concatenate([rng.permutation(size)[:k] for size in sizes])
    clicks = (rng.random(requests * k) < 0.2).astype(np.int8)
    pays = (clicks & (rng.random(requests * k) < 0.3)).astype(np.int8)
    attrs = np.stack([rng.integers(0, c, requests) for c in SPEC.attr_cardinalities], axis=1)
    request = first_request + np.arange(requests, dtype=np.int64)
    base = np.datetime64("2026-01-01T08:00:00", "ms")
    schema = rerank_lists_schema(SPEC)
    dim = SPEC.rerank_feature_dim
    features = rng.normal(size=int(sizes.sum()) * dim).astype(np.float32)
    columns = {
        "request_id": pa.array(request),
        "session_id": pa.array(request),
        "user_id": pa.array(request // 2 + 1000),
        "ts": pa.array(base + (request * 60_000).astype("timedelta64[ms]")).cast(
            schema.field("ts").type
        ),
        "scenario": pa.array(["main_search"] * requests),
        "query_category": pa.array(rng.integers(0, SPEC.n_query_categories, requests), pa.int16()),
        "customer_attrs": pa.array(
            list(attrs.astype(np.int16)), schema.field("customer_attrs").type
        ),
        "candidate_item_ids": pa.ListArray.from_arrays(offsets, pa.array(ids, pa.int64())),
        "candidate_features": pa.ListArray.from_arrays(
            offsets, pa.FixedSizeListArray.from_arrays(pa.array(features), dim)
        ),
        "candidate_prices": pa.ListArray.from_arrays(
            offsets, pa.array(rng.uniform(1, 100, int(sizes.sum())).astype(np.float32))
        ),
        "shown_order": pa.ListArray.from_arrays(shown_offsets, pa.array(shown, pa.int16())),
        "click_labels": pa.ListArray.from_arrays(shown_offsets, pa.array(clicks)),
        "pay_labels": pa.ListArray.from_arrays(shown_offsets, pa.array(pays)),
    }
    arrays = [columns[f.name].cast(f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_rerank(
    table: pa.Table,
    root: Path,
    date: datetime.date = datetime.date(2026, 1, 1),
    name: str = "part-00000.parquet",
    row_group_size: int | None = None,
) -> Path:
    """Like `write`, into the `rerank_lists` table of the dataset at `root`."""
    return write(table, root, date, name, row_group_size, table_name="rerank_lists")
