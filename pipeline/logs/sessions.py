"""Group validated page views into sessions and build the training tables.

Input: every row of a set of sessions (ingestion buckets rows by session id, so a session is
never split), already row-valid. Session-level checks, in this order, each on what the
previous ones kept:

1. a session whose rows carry more than one user id is quarantined whole: its rows would land
   on different users' shards and no single customer produced it;
2. duplicated page views (same session and page_index): the first in source order is kept;
3. page_index must run 0, 1, 2, ...: from the first gap on, the session's rows are quarantined
   (a transition across a missing page would be a lie);
4. nothing may follow a `buy` or a `leave` (the paper's T^c terminates there).

Then, per kept row (paper, "Problem Description"): the engine transition (s, a, r, s', done)
with T(s, a) = s on turn_page and a new customer otherwise (so done), the customer transition
(s^c = <s, a, n>, a^c), and one customer-feature row per session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.logs.schema import (
    CustomerAction,
    LogSpec,
    RewardColumn,
    customer_features_schema,
    customer_transitions_schema,
    engine_transitions_schema,
)
from pipeline.logs.sharding import shard_of
from pipeline.logs.validate import Problems, row_texts


@dataclass(frozen=True)
class Sessionized:
    """The training tables, rows ordered by shard (then session, page), and the rejects."""

    engine_transitions: pa.Table
    customer_transitions: pa.Table
    customer_features: pa.Table
    shard: np.ndarray  # shard of each transition row (non-decreasing)
    feature_shard: np.ndarray  # shard of each customer-feature row (non-decreasing)
    rejected: pa.Table  # quarantined input rows
    rejected_reasons: list[str]


def _starts(keys: np.ndarray) -> np.ndarray:
    """True where a new run of equal `keys` begins."""
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return first


def _since_first(flag: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """True from the first `flag` of each group to the end of that group."""
    count = np.cumsum(flag)
    before = np.maximum.accumulate(np.where(group_start, count - flag, 0))
    return count - before > 0


def _session_checks(sid, uid, page, action, problems: Problems) -> None:
    """Flag rows breaking a session rule; arrays are in (session, page, source) order."""
    start = _starts(sid)
    group = np.cumsum(start) - 1
    first_idx = np.flatnonzero(start)
    lo = np.minimum.reduceat(uid, first_idx)[group]
    hi = np.maximum.reduceat(uid, first_idx)[group]
    multi = lo != hi
    problems.add(
        multi, row_texts(multi, lambda i: f"session {sid[i]} spans users {lo[i]} and {hi[i]}")
    )
    kept = ~multi

    dup = kept & ~start & np.r_[False, page[1:] == page[:-1]]
    problems.add(
        dup, row_texts(dup, lambda i: f"duplicate page view (session {sid[i]}, page {page[i]})")
    )
    kept &= ~dup

    idx = np.flatnonzero(kept)
    k_start = _starts(sid[idx])
    position = np.arange(len(idx)) - np.maximum.accumulate(
        np.where(k_start, np.arange(len(idx)), 0)
    )
    gap = np.zeros(len(sid), dtype=bool)
    gap[idx] = _since_first(page[idx] != position, k_start)
    problems.add(
        gap,
        row_texts(
            gap,
            lambda i: f"page_index gap in session {sid[i]} (page {page[i]} after a missing page)",
        ),
    )
    kept &= ~gap

    idx = np.flatnonzero(kept)
    k_start = _starts(sid[idx])
    ended = action[idx] != CustomerAction.TURN_PAGE.value
    after = np.zeros(len(sid), dtype=bool)
    after[idx] = _since_first(np.r_[False, ended[:-1]] & ~k_start, k_start)
    problems.add(
        after,
        row_texts(after, lambda i: f"page view after the end of session {sid[i]} (page {page[i]})"),
    )


def _reward(t: pa.Table, reward: RewardColumn) -> pa.Array:
    return pc.cast(t.column(reward.value), pa.float32())


def _build(t: pa.Table, spec: LogSpec, reward: RewardColumn) -> tuple[pa.Table, pa.Table, pa.Table]:
    sid = t.column("session_id").to_numpy()
    start = _starts(sid)
    clicks = t.column("num_clicks").fill_null(0).to_numpy().astype(np.int16)
    last_clicks = np.where(start, 0, np.r_[0, clicks[:-1]]).astype(np.int16)
    page = t.column("page_index").to_numpy()
    turn = pc.equal(t.column("customer_action"), CustomerAction.TURN_PAGE.value).to_numpy(
        zero_copy_only=False
    )
    engine = {
        name: t.column(name)
        for name in engine_transitions_schema(spec).names
        if name in t.column_names
    }
    engine.update(
        last_clicks=pa.array(last_clicks),
        reward=_reward(t, reward),
        next_page_index=pa.array((page + 1).astype(np.int16)),
        next_last_clicks=pa.array(clicks),
        done=pa.array(~turn | (page >= spec.max_index)),
    )
    e_schema = engine_transitions_schema(spec).with_metadata(
        {**engine_transitions_schema(spec).metadata, b"ecomrl.reward": reward.value.encode()}
    )
    engine_table = pa.Table.from_pydict({f.name: engine[f.name] for f in e_schema}, schema=e_schema)
    c_schema = customer_transitions_schema(spec)
    customer_table = t.select(c_schema.names).cast(c_schema)
    return engine_table, customer_table, _features(t, start, spec)


def _features(t: pa.Table, start: np.ndarray, spec: LogSpec) -> pa.Table:
    schema = customer_features_schema(spec)
    first = np.flatnonzero(start)
    pages = np.diff(np.r_[first, len(start)]).astype(np.int16)
    purchase = t.column("purchase")
    bought = purchase.fill_null(False).to_numpy(zero_copy_only=False)
    known = purchase.is_valid().to_numpy(zero_copy_only=False)
    any_bought = np.logical_or.reduceat(bought, first) if len(first) else np.zeros(0, bool)
    any_known = np.logical_or.reduceat(known, first) if len(first) else np.zeros(0, bool)
    head = t.take(first)
    hour = pc.hour(head.column("ts")).to_numpy()
    cols = {name: head.column(name) for name in schema.names if name in head.column_names}
    cols.update(
        time_slice=pa.array((hour // 2).astype(np.int8)),
        num_pages=pa.array(pages),
        purchased=pa.array(any_bought, mask=~any_known),
    )
    return pa.Table.from_pydict({f.name: cols[f.name] for f in schema}, schema=schema)


def _column(rows: pa.Table, name: str) -> np.ndarray:
    return rows.column(name).to_numpy()


def sessionize(rows: pa.Table, spec: LogSpec, reward: RewardColumn, shards: int) -> Sessionized:
    """Check sessions and build the three training tables from one bucket of rows.

    `rows` has the page_views columns plus `date`, `_file_id` and `_row` (source position; it
    orders duplicates so the first one read wins). The checks run on key columns only; the
    wide table is gathered once, straight into shard order."""
    sid, page = _column(rows, "session_id"), _column(rows, "page_index")
    order = np.lexsort((_column(rows, "_row"), _column(rows, "_file_id"), page, sid))
    uid = _column(rows, "user_id")[order]
    action = rows.column("customer_action").to_numpy(zero_copy_only=False)[order]
    problems = Problems(len(order))
    _session_checks(sid[order], uid, page[order].astype(np.int64), action, problems)
    bad = problems.bad
    kept = np.flatnonzero(~bad)
    shard = shard_of(uid[kept], shards)
    by_shard = np.argsort(shard, kind="stable")  # sessions stay contiguous and ordered
    t = rows.take(order[kept[by_shard]])
    engine, customer, features = _build(t, spec, reward)
    return Sessionized(
        engine_transitions=engine,
        customer_transitions=customer,
        customer_features=features,
        shard=shard[by_shard],
        feature_shard=shard_of(features.column("user_id").to_numpy(), shards),
        rejected=rows.take(order[bad]),
        rejected_reasons=list(problems.reasons[bad]),
    )
