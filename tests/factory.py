"""Hand-made, contract-valid page views for ingestion tests (independent of the world)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.logs.schema import LogSpec, page_views_schema

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
) -> Path:
    path = root / "page_views" / f"date={date.isoformat()}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path
