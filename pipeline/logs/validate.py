"""Row-level validation of `page_views` against the data contract.

`validate_page_views` takes any arrow table read from a file (possibly with missing columns,
wrong types, bad values) and returns the rows that conform, cast to the contract schema, plus
the index and reason of every row that does not. Checks are vectorised; Python only touches
bad rows, to word their reasons. A row with several problems gets all of them, joined by "; ".

Session-level checks (duplicates, page_index gaps, sessions spanning users) need all rows of a
session together; they live in `pipeline/logs/sessions.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.logs.schema import CustomerAction, LogSpec, RewardColumn, page_views_schema

ACTIONS = tuple(a.value for a in CustomerAction)


class Problems:
    """Accumulates reasons per row; only bad rows cost Python time."""

    def __init__(self, n: int):
        self.reasons = np.full(n, None, dtype=object)

    def add(self, mask: np.ndarray, reason: str | np.ndarray) -> None:
        for i in np.flatnonzero(mask):
            text = reason if isinstance(reason, str) else reason[i]
            old = self.reasons[i]
            self.reasons[i] = text if old is None else f"{old}; {text}"

    @property
    def bad(self) -> np.ndarray:
        return np.not_equal(self.reasons, None)


@dataclass(frozen=True)
class Validated:
    good: pa.Table  # conforming rows, contract schema, input order
    good_index: np.ndarray  # their row numbers in the input
    bad_index: np.ndarray
    bad_reasons: list[str]


def _cast_each(col: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast value by value (slow path, only for a column whose whole-column cast failed)."""
    values, failed = [], np.zeros(len(col), dtype=bool)
    for i, scalar in enumerate(col):
        try:
            values.append(scalar.cast(target).as_py())
        except pa.ArrowException:  # invalid value, unsupported cast, wrong type
            values.append(None)
            failed[i] = True
    return pa.array(values, type=target), failed


def _conform(raw: pa.Table, field: pa.Field, problems: Problems) -> tuple[pa.Array, np.ndarray]:
    """The column cast to the contract type, and the rows already flagged for this column."""
    n = raw.num_rows
    if field.name not in raw.column_names:
        flagged = np.ones(n, dtype=bool)
        problems.add(flagged, f"missing column {field.name!r}")
        return pa.nulls(n, field.type), flagged
    col = raw.column(field.name).combine_chunks()
    flagged = np.zeros(n, dtype=bool)
    if col.type != field.type:
        try:
            col = pc.cast(col, field.type, safe=True)
        except pa.ArrowException:  # invalid value, unsupported cast, wrong type
            original = col.type
            col, flagged = _cast_each(col, field.type)
            problems.add(flagged, f"column {field.name!r}: value is not {field.type} ({original})")
    if not field.nullable:
        nulls = col.is_null().to_numpy(zero_copy_only=False) & ~flagged
        problems.add(nulls, f"null {field.name}")
        flagged |= nulls
    return col, flagged


def _matrix(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-size-list column as an (n, size) float64 matrix and a mask of rows with a null
    list or a null element."""
    size = col.type.list_size
    child = col.values.slice(col.offset * size, len(col) * size)
    mat = child.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), size)
    has_null = child.is_null().to_numpy(zero_copy_only=False).reshape(len(col), size).any(axis=1)
    return mat, has_null | col.is_null().to_numpy(zero_copy_only=False)


def _int(col: pa.Array, fill: int = 0) -> np.ndarray:
    return col.fill_null(fill).to_numpy(zero_copy_only=False).astype(np.int64)


def row_texts(mask: np.ndarray, word) -> np.ndarray:
    """Per-row reason texts built by `word(i)` for the rows in `mask` only."""
    texts = np.full(mask.shape[0], None, dtype=object)
    for i in np.flatnonzero(mask):
        texts[i] = word(i)
    return texts


def _check_ranges(cols, flagged, spec: LogSpec, problems: Problems) -> None:
    q = _int(cols["query_category"])
    bad = ~flagged["query_category"] & ((q < 0) | (q >= spec.n_query_categories))
    problems.add(
        bad,
        row_texts(bad, lambda i: f"query_category {q[i]} not in [0, {spec.n_query_categories})"),
    )

    attrs, attr_null = _matrix(cols["customer_attrs"])
    card = np.asarray(spec.attr_cardinalities)
    ok = ~flagged["customer_attrs"]
    problems.add(ok & attr_null, "null inside customer_attrs")
    out = ok[:, None] & ~attr_null[:, None] & ((attrs < 0) | (attrs >= card))
    bad = out.any(axis=1)

    def attr_reason(i: int) -> str:
        g = int(np.flatnonzero(out[i])[0])
        return (
            f"customer_attrs[{g}] ({spec.attr_names[g]}) = {int(attrs[i, g])} not in [0, {card[g]})"
        )

    problems.add(bad, row_texts(bad, attr_reason))

    page = _int(cols["page_index"])
    bad = ~flagged["page_index"] & ((page < 0) | (page > spec.max_index))
    problems.add(
        bad, row_texts(bad, lambda i: f"page_index {page[i]} not in [0, MaxIndex={spec.max_index}]")
    )

    clicks_col = cols["num_clicks"]
    clicks = _int(clicks_col)
    has = ~flagged["num_clicks"] & clicks_col.is_valid().to_numpy(zero_copy_only=False)
    bad = has & ((clicks < 0) | (clicks > spec.page_size))
    problems.add(
        bad, row_texts(bad, lambda i: f"num_clicks {clicks[i]} not in [0, {spec.page_size}]")
    )

    scenario = cols["scenario"]
    bad = ~flagged["scenario"] & ~pc.is_in(scenario, pa.array(spec.scenarios)).fill_null(
        False
    ).to_numpy(zero_copy_only=False)
    problems.add(bad, row_texts(bad, lambda i: f"unknown scenario {scenario[i].as_py()!r}"))


def _check_numbers(cols, flagged, problems: Problems) -> None:
    action, action_null = _matrix(cols["engine_action"])
    ok = ~flagged["engine_action"]
    problems.add(ok & action_null, "null inside engine_action")
    problems.add(
        ok & ~action_null & ~np.isfinite(action).all(axis=1),
        "non-finite engine_action (NaN or inf)",
    )

    dense_col = cols["customer_dense"]
    dense, dense_null = _matrix(dense_col)
    present = ~flagged["customer_dense"] & dense_col.is_valid().to_numpy(zero_copy_only=False)
    problems.add(present & dense_null, "null inside customer_dense")
    problems.add(
        present & ~dense_null & ~np.isfinite(dense).all(axis=1),
        "non-finite customer_dense (NaN or inf)",
    )

    prices, price_null = _matrix(cols["item_prices"])
    ok = ~flagged["item_prices"]
    problems.add(ok & price_null, "null inside item_prices")
    problems.add(ok & ~price_null & ~np.isfinite(prices).all(axis=1), "non-finite item price")
    problems.add(ok & ~price_null & (prices < 0).any(axis=1), "negative item price")

    _, ids_null = _matrix(cols["item_ids"])
    problems.add(~flagged["item_ids"] & ids_null, "null inside item_ids")


def _check_feedback(cols, flagged, reward: RewardColumn, problems: Problems) -> None:
    action = cols["customer_action"]
    known = pc.is_in(action, pa.array(ACTIONS)).fill_null(False).to_numpy(zero_copy_only=False)
    bad = ~flagged["customer_action"] & ~known
    problems.add(bad, row_texts(bad, lambda i: f"unknown feedback label {action[i].as_py()!r}"))

    buy = pc.equal(action, CustomerAction.BUY.value).fill_null(False).to_numpy(zero_copy_only=False)
    purchase_col = cols["purchase"]
    has_purchase = ~flagged["purchase"] & purchase_col.is_valid().to_numpy(zero_copy_only=False)
    purchase = purchase_col.fill_null(False).to_numpy(zero_copy_only=False)
    bad = has_purchase & known & (purchase != buy)
    problems.add(
        bad,
        row_texts(
            bad, lambda i: f"purchase={bool(purchase[i])} but customer_action={action[i].as_py()!r}"
        ),
    )

    amount_col = cols["purchase_amount"]
    has_amount = ~flagged["purchase_amount"] & amount_col.is_valid().to_numpy(zero_copy_only=False)
    amount = amount_col.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    problems.add(
        has_amount & ~(np.isfinite(amount) & (amount >= 0)),
        "purchase_amount is negative or non-finite",
    )
    problems.add(
        has_amount & has_purchase & ~purchase & (amount > 0),
        "purchase_amount > 0 without a purchase",
    )

    # The reward is a config choice; a row without that feedback cannot be a training example.
    reward_null = ~flagged[reward.value] & cols[reward.value].is_null().to_numpy(
        zero_copy_only=False
    )
    problems.add(reward_null, f"reward column {reward.value!r} is null")


def validate_page_views(raw: pa.Table, spec: LogSpec, reward: RewardColumn) -> Validated:
    """Split `raw` into contract-conforming rows and quarantined (index, reason) pairs."""
    schema = page_views_schema(spec)
    problems = Problems(raw.num_rows)
    cols, flagged = {}, {}
    for field in schema:
        cols[field.name], flagged[field.name] = _conform(raw, field, problems)
    _check_ranges(cols, flagged, spec, problems)
    _check_numbers(cols, flagged, problems)
    _check_feedback(cols, flagged, reward, problems)
    return split_rows(cols, schema, problems)


def split_rows(cols: dict, schema: pa.Schema, problems: Problems) -> Validated:
    """The conforming rows (contract schema, input order) and the others with their reasons."""
    bad = problems.bad
    good_index = np.flatnonzero(~bad)
    table = pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)
    bad_index = np.flatnonzero(bad)
    return Validated(
        table.take(good_index), good_index, bad_index, list(problems.reasons[bad_index])
    )


def rows_as_json(table: pa.Table, index: np.ndarray) -> list[str]:
    """The rows at `index`, each as one JSON object (NaN and inf kept as JS literals)."""
    return [json.dumps(row, default=str) for row in table.take(index).to_pylist()]
