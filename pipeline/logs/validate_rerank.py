"""Row-level validation of `rerank_lists` against the data contract.

`validate_rerank_lists` is the re-ranking counterpart of `validate_page_views`: any arrow table
read from a file in, the conforming rows (contract schema) and the index and reason of every
other row out. A request is usable only if the evaluators and `ReRank-v0` can read it as is:

- at least k candidates, no item id twice, one feature row and one price per candidate;
- prices present, finite and positive; features present and finite;
- `shown_order` holds exactly k distinct candidate indices in [0, n);
- `click_labels` and `pay_labels` (the latter required: the PAY and GMV rewards need it) have
  one 0/1 label per shown position;
- customer attributes, query category and scenario in the spec's ranges (validate.py's checks).

Checks are vectorised over the flattened lists; Python only words the reasons of bad rows.
A row with several problems gets all of them, joined by "; ".

A null feature row is checked here, but pyarrow (25) cannot read one back from parquet (a null
fixed-size list inside a list, apache/arrow#35692): in a log file it makes its row group
unreadable, and ingestion quarantines that whole row group with the reader's error.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.logs.schema import LogSpec, rerank_lists_schema
from pipeline.logs.validate import (
    Problems,
    Validated,
    _check_ranges,
    _conform,
    _matrix,
    row_texts,
    split_rows,
)

# Columns `_check_ranges` also reads that only page views have: passed as already flagged, so
# their checks skip every row.
_PAGE_VIEW_ONLY = {"page_index": pa.int16(), "num_clicks": pa.int16()}


class _Lists:
    """A list column flattened: each row's length (0 for a null list), the elements, the row of
    every element and which elements are null."""

    def __init__(self, col: pa.Array):
        self.lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
        # list_flatten skips null lists, so the parents come from the lengths, not from
        # list_parent_indices (which counts the elements a null list's offsets span).
        self.values = pc.list_flatten(col)
        self.parent = np.repeat(np.arange(len(col)), self.lengths)
        self.null = self.values.is_null().to_numpy(zero_copy_only=False)

    def numbers(self, fill=0) -> np.ndarray:
        return self.values.fill_null(fill).to_numpy(zero_copy_only=False)

    def rows(self, mask: np.ndarray, n: int) -> np.ndarray:
        """Rows with at least one element in `mask`."""
        out = np.zeros(n, dtype=bool)
        out[self.parent[mask]] = True
        return out

    def first(self, mask: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        """The first value in `mask` of each row (0 for rows without one)."""
        hit = np.flatnonzero(mask)
        rows, at = np.unique(self.parent[hit], return_index=True)
        out = np.zeros(n, dtype=values.dtype)
        out[rows] = values[hit[at]]
        return out


def _duplicated(lists: _Lists, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows holding a (non-null) value twice, and one such value per row."""
    keep = ~lists.null
    values, parent = lists.numbers()[keep], lists.parent[keep]
    order = np.lexsort((values, parent))
    values, parent = values[order], parent[order]
    twice = (parent[1:] == parent[:-1]) & (values[1:] == values[:-1])
    rows, at = np.unique(parent[1:][twice], return_index=True)
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    value = np.zeros(n, dtype=values.dtype)
    value[rows] = values[1:][twice][at]
    return mask, value


def _check_candidates(cols, flagged, k: int, problems: Problems) -> np.ndarray:
    """Candidate count, duplicated ids, one feature row and one price per candidate; returns n
    per row (meaningful where candidate_item_ids is not flagged)."""
    rows = len(cols["candidate_item_ids"])
    ids = _Lists(cols["candidate_item_ids"])
    count = ids.lengths
    ok = ~flagged["candidate_item_ids"]

    few = ok & (count < k)
    problems.add(few, row_texts(few, lambda i: f"{count[i]} candidates, fewer than k={k}"))
    problems.add(ok & ids.rows(ids.null, rows), "null inside candidate_item_ids")
    twice, item = _duplicated(ids, rows)
    twice &= ok
    problems.add(
        twice, row_texts(twice, lambda i: f"duplicated item id {item[i]} in candidate_item_ids")
    )

    for name in ("candidate_features", "candidate_prices"):
        length = pc.list_value_length(cols[name]).fill_null(0).to_numpy(zero_copy_only=False)
        bad = ok & ~flagged[name] & (length != count)
        problems.add(
            bad,
            row_texts(
                bad,
                lambda i, name=name, length=length: (
                    f"{name} has {length[i]} entries for {count[i]} candidates"
                ),
            ),
        )
    return count


def _check_values(cols, flagged, problems: Problems) -> None:
    """Prices present, finite and positive; feature rows present and finite."""
    rows = len(cols["candidate_prices"])
    prices = _Lists(cols["candidate_prices"])
    ok = ~flagged["candidate_prices"]
    price = prices.numbers(np.nan).astype(np.float64)
    problems.add(ok & prices.rows(prices.null, rows), "null candidate price")
    problems.add(
        ok & prices.rows(~prices.null & ~np.isfinite(price), rows),
        "non-finite candidate price (NaN or inf)",
    )
    low = np.isfinite(price) & (price <= 0)
    bad = ok & prices.rows(low, rows)
    first = prices.first(low, price, rows)
    problems.add(bad, row_texts(bad, lambda i: f"non-positive candidate price {first[i]:g}"))

    features = _Lists(cols["candidate_features"])
    matrix, has_null = _matrix(features.values)
    ok = ~flagged["candidate_features"]
    problems.add(
        ok & features.rows(has_null, rows), "null feature row or value in candidate_features"
    )
    problems.add(
        ok & features.rows(~has_null & ~np.isfinite(matrix).all(axis=1), rows),
        "non-finite candidate_features (NaN or inf)",
    )


def _check_order(cols, flagged, count: np.ndarray, k: int, problems: Problems) -> np.ndarray:
    """`shown_order`: k positions, each a distinct candidate index in [0, n). Returns its
    length per row."""
    rows = len(cols["shown_order"])
    shown = _Lists(cols["shown_order"])
    ok = ~flagged["shown_order"]
    length = shown.lengths
    bad = ok & (length != k)
    problems.add(bad, row_texts(bad, lambda i: f"shown_order has {length[i]} positions, not k={k}"))
    problems.add(ok & shown.rows(shown.null, rows), "null inside shown_order")

    index = shown.numbers().astype(np.int64)
    outside = ~shown.null & ((index < 0) | (index >= count[shown.parent]))
    bad = ok & ~flagged["candidate_item_ids"] & shown.rows(outside, rows)
    first = shown.first(outside, index, rows)
    problems.add(
        bad, row_texts(bad, lambda i: f"shown_order index {first[i]} not in [0, {count[i]})")
    )
    twice, candidate = _duplicated(shown, rows)
    twice &= ok
    problems.add(twice, row_texts(twice, lambda i: f"candidate {candidate[i]} shown twice"))
    return length


def _check_labels(cols, flagged, shown: np.ndarray, problems: Problems) -> None:
    """One 0/1 click and pay label per shown position; pay labels must be logged."""
    rows = len(cols["shown_order"])
    missing = ~flagged["pay_labels"] & cols["pay_labels"].is_null().to_numpy(zero_copy_only=False)
    problems.add(missing, "pay_labels missing")
    for name in ("click_labels", "pay_labels"):
        labels = _Lists(cols[name])
        ok = ~flagged[name] & (cols[name].is_valid().to_numpy(zero_copy_only=False))
        length = labels.lengths
        bad = ok & ~flagged["shown_order"] & (length != shown)
        problems.add(
            bad,
            row_texts(
                bad,
                lambda i, name=name, length=length: (
                    f"{name} has {length[i]} labels for {shown[i]} shown positions"
                ),
            ),
        )
        problems.add(ok & labels.rows(labels.null, rows), f"null inside {name}")
        value = labels.numbers().astype(np.int64)
        wrong = ~labels.null & (value != 0) & (value != 1)
        bad = ok & labels.rows(wrong, rows)
        first = labels.first(wrong, value, rows)
        problems.add(
            bad,
            row_texts(
                bad, lambda i, name=name, first=first: f"{name} value {first[i]} not in {{0, 1}}"
            ),
        )


def _check_request_ranges(cols, flagged, spec: LogSpec, problems: Problems) -> None:
    """validate.py's range checks: query_category, customer_attrs, scenario."""
    rows = len(cols["scenario"])
    absent = {name: pa.nulls(rows, kind) for name, kind in _PAGE_VIEW_ONLY.items()}
    skip = {name: np.ones(rows, dtype=bool) for name in _PAGE_VIEW_ONLY}
    _check_ranges({**cols, **absent}, {**flagged, **skip}, spec, problems)


def validate_rerank_lists(raw: pa.Table, spec: LogSpec, k: int) -> Validated:
    """Split `raw` into contract-conforming requests with k shown positions and quarantined
    (index, reason) pairs."""
    schema = rerank_lists_schema(spec)
    problems = Problems(raw.num_rows)
    cols, flagged = {}, {}
    for field in schema:
        cols[field.name], flagged[field.name] = _conform(raw, field, problems)
    _check_request_ranges(cols, flagged, spec, problems)
    count = _check_candidates(cols, flagged, k, problems)
    _check_values(cols, flagged, problems)
    shown = _check_order(cols, flagged, count, k, problems)
    _check_labels(cols, flagged, shown, problems)
    return split_rows(cols, schema, problems)
