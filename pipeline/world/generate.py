"""`generate_logs`: the historical logs of the reference world under the logging policy.

Writes ``out/page_views/date=YYYY-MM-DD/part-NNNNN.parquet`` and
``out/rerank_lists/date=YYYY-MM-DD/part-NNNNN.parquet`` in the contract schemas. `sessions` counts
main-search sessions; in-shop sessions (a fraction of the main sessions with a click) come on top.

Determinism: the world is ``World(spec, params, seed)``; the user population and every chunk of
`CHUNK_SESSIONS` sessions draw from their own SeedSequence stream keyed by (day, chunk), and files
are cut at fixed row counts, so the bytes depend on the arguments only.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.logs.schema import (
    PAGE_VIEWS,
    RERANK_LISTS,
    LogSpec,
    page_views_schema,
    rerank_lists_schema,
)
from pipeline.world.logging_policy import LoggingPolicy
from pipeline.world.market import (
    ACTIONS,
    IN_SHOP,
    LOG_STREAM,
    POPULATION_STREAM,
    SCENARIOS,
    PageViews,
    Population,
    Sessions,
    World,
    stream,
)
from pipeline.world.params import WorldParams
from pipeline.world.rerank import RerankMarket, RerankRequests

CHUNK_SESSIONS = 16_384  # main-search sessions simulated together
ROW_GROUP_ROWS = 65_536
ROWS_PER_FILE = 8 * ROW_GROUP_ROWS
_DAY_MS = 86_400_000
# Low-cardinality columns; dictionary-encoding the random floats would only cost time.
_DICTIONARY = (
    "scenario",
    "customer_action",
    "query_category",
    "customer_attrs",
    "page_index",
    "num_clicks",
    "purchase",
)


@dataclass(frozen=True)
class GenerateSummary:
    out: Path
    sessions: int  # main-search sessions
    page_views: int  # all scenarios
    rerank_requests: int
    days: int
    files: list[Path]
    purchases: int
    r2p: float  # purchases / page views, all scenarios
    in_shop_sessions: int
    users: int
    clicks: int
    turnover: float  # sum of purchase amounts


class _PartWriter:
    """Part files of one table and date: fixed-size row groups, at most ROWS_PER_FILE rows a
    file, so the files depend only on the rows written."""

    def __init__(self, directory: Path, schema: pa.Schema):
        self.directory, self.schema = directory, schema
        self.files: list[Path] = []
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._file_rows = 0

    def write(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        while self._buffered >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._buffer)
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.files.append(self.directory / f"part-{len(self.files):05d}.parquet")
            dictionary = [name for name in _DICTIONARY if name in self.schema.names]
            self._writer = pq.ParquetWriter(
                self.files[-1], self.schema, compression="zstd", use_dictionary=dictionary
            )
        self._writer.write_table(table.slice(0, rows), row_group_size=rows)
        self._file_rows += rows
        rest = table.slice(rows)
        self._buffer, self._buffered = ([rest] if rest.num_rows else []), rest.num_rows
        if self._file_rows >= ROWS_PER_FILE:
            self._close_file()

    def _close_file(self) -> None:
        self._writer.close()
        self._writer, self._file_rows = None, 0

    def close(self) -> list[Path]:
        if self._buffered:
            self._flush(self._buffered)
        if self._writer is not None:
            self._close_file()
        return self.files


def _fixed_list(values: np.ndarray, field: pa.Field) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values).ravel(), type=field.type.value_type)
    return pa.FixedSizeListArray.from_arrays(flat, type=field.type)


def _strings(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(names)).cast(
        pa.string()
    )


def _timestamps(day_ms: int, seconds: np.ndarray) -> pa.Array:
    ms = day_ms + np.clip(np.round(seconds * 1000.0), 0, _DAY_MS - 1).astype(np.int64)
    return pa.array(ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def page_view_table(
    schema: pa.Schema,
    pop: Population,
    sessions: Sessions,
    views: PageViews,
    session_ids: np.ndarray,
    day_ms: int,
) -> pa.Table:
    """The contract table of a batch of page views (`session_ids` (L,) per session row)."""
    user = sessions.user[views.session]
    f = schema.field
    columns = {
        "session_id": pa.array(session_ids[views.session], pa.int64()),
        "user_id": pa.array(user, pa.int64()),
        "ts": _timestamps(day_ms, views.ts_s),
        "scenario": _strings(np.full(user.size, sessions.scenario), SCENARIOS),
        "query_category": pa.array(sessions.query[views.session], pa.int16()),
        "customer_attrs": _fixed_list(pop.attrs[user], f("customer_attrs")),
        "customer_dense": _fixed_list(pop.dense[user], f("customer_dense")),
        "page_index": pa.array(views.page_index, pa.int16()),
        "engine_action": _fixed_list(views.action, f("engine_action")),
        "item_ids": _fixed_list(views.items, f("item_ids")),
        "item_prices": _fixed_list(views.prices, f("item_prices")),
        "num_clicks": pa.array(views.clicks, pa.int16()),
        "purchase": pa.array(views.purchase, pa.bool_()),
        "purchase_amount": pa.array(views.amount, pa.float32()),
        "customer_action": _strings(views.customer_action, ACTIONS),
    }
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def rerank_table(
    schema: pa.Schema,
    pop: Population,
    sessions: Sessions,
    requests: RerankRequests,
    session_ids: np.ndarray,
    day_ms: int,
) -> pa.Table:
    """The contract table of a batch of re-ranking requests (request_id = session_id)."""
    rows = requests.session
    offsets = pa.array(requests.offsets, pa.int32())
    k = requests.shown_order.shape[1]
    shown = pa.array(np.arange(rows.size + 1, dtype=np.int32) * k)
    f = schema.field
    columns = {
        "request_id": pa.array(session_ids[rows], pa.int64()),
        "session_id": pa.array(session_ids[rows], pa.int64()),
        "user_id": pa.array(sessions.user[rows], pa.int64()),
        "ts": _timestamps(day_ms, sessions.start_s[rows]),
        "scenario": _strings(np.full(rows.size, sessions.scenario), SCENARIOS),
        "query_category": pa.array(sessions.query[rows], pa.int16()),
        "customer_attrs": _fixed_list(pop.attrs[sessions.user[rows]], f("customer_attrs")),
        "candidate_item_ids": pa.ListArray.from_arrays(offsets, pa.array(requests.candidates)),
        "candidate_features": pa.ListArray.from_arrays(
            offsets, _fixed_list(requests.features, f("candidate_features").type.value_field)
        ),
        "candidate_prices": pa.ListArray.from_arrays(offsets, pa.array(requests.prices)),
        "shown_order": pa.ListArray.from_arrays(shown, pa.array(requests.shown_order.ravel())),
        "click_labels": pa.ListArray.from_arrays(shown, pa.array(requests.clicks.ravel())),
        "pay_labels": pa.ListArray.from_arrays(shown, pa.array(requests.pays.ravel())),
    }
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


@dataclass
class _Totals:
    page_views: int = 0
    purchases: int = 0
    clicks: int = 0
    turnover: float = 0.0
    in_shop: int = 0
    requests: int = 0

    def add(self, views: PageViews) -> None:
        self.page_views += views.session.size
        self.purchases += int(views.purchase.sum())
        self.clicks += int(views.clicks.sum())
        self.turnover += float(views.amount.sum(dtype=np.float64))


def _sessions_per_day(sessions: int, days: int) -> list[int]:
    return [sessions // days + (d < sessions % days) for d in range(days)]


def generate_logs(
    out: str | Path,
    sessions: int,
    days: int = 1,
    seed: int = 0,
    spec: LogSpec | None = None,
    params: WorldParams | None = None,
    start_date: datetime.date = datetime.date(2026, 1, 1),
    progress: bool = False,
) -> GenerateSummary:
    """Simulate `sessions` main-search sessions (plus their in-shop follow-ups and re-ranking
    requests) spread evenly over `days` days of ``World(spec, params, seed)`` under the
    `LoggingPolicy`, and write both tables. Day d (date start_date + d) sees the world drifted by
    d days. Main sessions have ids 0..sessions-1; the in-shop session after main session i has id
    sessions + i; a re-ranking request has the id of its session."""
    if sessions < 1 or days < 1:
        raise ValueError("sessions and days must be positive")
    out = Path(out)
    for table in (PAGE_VIEWS, RERANK_LISTS):
        if (out / table).exists() and any((out / table).iterdir()):
            raise FileExistsError(f"{out / table} is not empty; refusing to mix two generations")
    world = World(spec, params, seed)
    spec, params = world.spec, world.params
    users = max(1, round(sessions / params.sessions_per_user))
    pop = world.sample_population(stream(seed, POPULATION_STREAM), users)
    rerank = RerankMarket(world)
    schemas = {PAGE_VIEWS: page_views_schema(spec), RERANK_LISTS: rerank_lists_schema(spec)}
    totals, files, first = _Totals(), [], 0
    with tqdm(total=sessions, unit="session", disable=not progress) as bar:
        for day, count in enumerate(_sessions_per_day(sessions, days)):
            date = start_date + datetime.timedelta(days=day)
            day_ms = (date - datetime.date(1970, 1, 1)).days * _DAY_MS
            writers = {
                t: _PartWriter(out / t / f"date={date.isoformat()}", schemas[t]) for t in schemas
            }
            for chunk, lo in enumerate(range(0, count, CHUNK_SESSIONS)):
                ids = first + lo + np.arange(min(CHUNK_SESSIONS, count - lo), dtype=np.int64)
                rng = stream(seed, LOG_STREAM, day, chunk)
                tables = _simulate_chunk(
                    world, rerank, pop, rng, day, ids, sessions, day_ms, schemas, totals
                )
                for name, table in tables.items():
                    writers[name].write(table)
                bar.update(ids.size)
            for writer in writers.values():
                files.extend(writer.close())
            first += count
    return GenerateSummary(
        out=out,
        sessions=sessions,
        page_views=totals.page_views,
        rerank_requests=totals.requests,
        days=days,
        files=files,
        purchases=totals.purchases,
        r2p=totals.purchases / max(totals.page_views, 1),
        in_shop_sessions=totals.in_shop,
        users=users,
        clicks=totals.clicks,
        turnover=totals.turnover,
    )


def _simulate_chunk(
    world: World,
    rerank: RerankMarket,
    pop: Population,
    rng: np.random.Generator,
    day: int,
    ids: np.ndarray,
    total: int,
    day_ms: int,
    schemas: dict[str, pa.Schema],
    totals: _Totals,
) -> dict[str, pa.Table]:
    """One chunk of main sessions, their in-shop follow-ups and re-ranking requests."""
    policy = LoggingPolicy(world.spec, world.params.logging_scale, seed=int(rng.integers(2**62)))
    main = world.draw_sessions(pop, ids.size, rng, day)
    main_views = world.run(pop, main, policy, rng, day)
    shop_views = None
    if SCENARIOS[IN_SHOP] in world.spec.scenarios:
        rows, shop = world.follow_up_in_shop(main, main_views, rng)
        shop_views = world.run(pop, shop, policy, rng, day) if shop.size else None
    requests = rerank.log_requests(pop, main, rng, day)
    totals.add(main_views)
    pages = [page_view_table(schemas[PAGE_VIEWS], pop, main, main_views, ids, day_ms)]
    if shop_views is not None:
        totals.add(shop_views)
        totals.in_shop += shop.size
        pages.append(
            page_view_table(schemas[PAGE_VIEWS], pop, shop, shop_views, total + ids[rows], day_ms)
        )
    totals.requests += requests.session.size
    return {
        PAGE_VIEWS: pa.concat_tables(pages),
        RERANK_LISTS: rerank_table(schemas[RERANK_LISTS], pop, main, requests, ids, day_ms),
    }
