"""Validated re-ranking requests as padded arrays: what the evaluators, `ReRank-v0` and the
metrics all read.

A request has n candidates (n varies: 17, 30, 50, 100 in the default world) and a logged order
of k of them. Arrays are padded to N = the largest n of the set; `valid` marks real candidates.
Model inputs are order-free functions of the candidate set, so the same item gets the same
features whatever list it is placed in:

    items[i] = (f_i, log p_i - mean_j log p_j, quantile of p_i in the candidate set)

and the customer is one-hot attributes plus one-hot query category. The raw features, prices,
attributes and query are kept for scoring lists with the world's true purchase model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.logs.schema import RERANK_LISTS, LogSpec, read_contract


@dataclass(frozen=True)
class Requests:
    request_id: np.ndarray  # (M,) int64
    attrs: np.ndarray  # (M, G) int16 customer attribute codes
    query: np.ndarray  # (M,) int16 query category
    features: np.ndarray  # (M, N, F) float32 logged candidate features (0 at padding)
    prices: np.ndarray  # (M, N) float32 (0 at padding)
    valid: np.ndarray  # (M, N) bool: a real candidate
    shown: np.ndarray  # (M, k) int64 logged order, candidate indices top first
    clicks: np.ndarray  # (M, k) int8 per shown position
    pays: np.ndarray  # (M, k) int8 per shown position
    user: np.ndarray  # (M, U) float32 model input: one-hot attrs + one-hot query
    items: np.ndarray  # (M, N, F + 2) float32 model input (module docstring)
    price_quantile: np.ndarray  # (M, N) float32 in (0, 1]: the GMV reward's price

    def __len__(self) -> int:
        return len(self.request_id)

    @property
    def sizes(self) -> np.ndarray:
        """n of each request."""
        return self.valid.sum(axis=1)

    @property
    def k(self) -> int:
        return self.shown.shape[1]

    def take(self, index: np.ndarray) -> Requests:
        """The requests at `index` (or a boolean mask), padding trimmed to their largest n."""
        picked = {f.name: getattr(self, f.name)[index] for f in fields(self)}
        width = int(picked["valid"].sum(axis=1).max(initial=self.k))
        for name in ("features", "prices", "valid", "items", "price_quantile"):
            picked[name] = picked[name][:, :width]
        return Requests(**picked)

    def with_sizes(self, sizes: tuple[int, ...] | None) -> Requests:
        """Only the requests whose n is in `sizes` (all when None)."""
        if sizes is None:
            return self
        chosen = self.take(np.isin(self.sizes, sizes))
        if len(chosen) == 0:
            found = sorted(set(self.sizes.tolist()))
            raise UserError(f"no request has n in {list(sizes)}; the data has n in {found}")
        return chosen

    def split(self, test_fraction: float, seed: int = 0) -> tuple[Requests, Requests]:
        """Train / test by a seeded hash of the request id: a request always lands on the same
        side, whatever else is in the set."""
        mixed = (self.request_id.astype(np.uint64) + np.uint64(seed)) * np.uint64(
            0x9E3779B97F4A7C15
        )
        test = (mixed >> np.uint64(11)).astype(np.float64) / 2.0**53 < test_fraction
        return self.take(~test), self.take(test)


def user_vector(spec: LogSpec, attrs: np.ndarray, query: np.ndarray) -> np.ndarray:
    """One-hot customer attributes and query category, (M, sum(cardinalities) + categories)."""
    starts = np.concatenate(([0], np.cumsum(spec.attr_cardinalities)))
    width = starts[-1] + spec.n_query_categories
    out = np.zeros((len(query), width), dtype=np.float32)
    rows = np.arange(len(query))[:, None]
    out[rows, starts[:-1] + attrs.astype(np.int64)] = 1.0
    out[np.arange(len(query)), starts[-1] + query.astype(np.int64)] = 1.0
    return out


def item_inputs(
    features: np.ndarray, prices: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(items, price_quantile) of the module docstring from padded raw arrays."""
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    log_price = np.log(np.where(valid, prices, 1.0))
    relative = np.where(valid, log_price - (log_price * valid).sum(1, keepdims=True) / count, 0.0)
    # Quantile = share of the candidate set priced at or below the item (ties count in full).
    below = (prices[:, None, :] <= prices[:, :, None]) & valid[:, None, :]
    quantile = np.where(valid, below.sum(axis=2) / count, 0.0).astype(np.float32)
    items = np.concatenate(
        [features, relative[..., None], quantile[..., None]], axis=2, dtype=np.float32
    )
    return items * valid[..., None], quantile


def _padded(column: pa.ChunkedArray, width: int, fill: float, dtype) -> np.ndarray:
    """A list column as (rows, width), `fill` after each row's end."""
    array = column.combine_chunks()
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(array).to_numpy(zero_copy_only=False)
    out = np.full((len(array), width, *flat.shape[1:]), fill, dtype=dtype)
    mask = np.arange(width)[None, :] < lengths[:, None]
    out[mask] = flat
    return out


def _features(column: pa.ChunkedArray, width: int, dim: int) -> np.ndarray:
    array = column.combine_chunks()
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(pc.list_flatten(array)).to_numpy(zero_copy_only=False)
    out = np.zeros((len(array), width, dim), dtype=np.float32)
    out[np.arange(width)[None, :] < lengths[:, None]] = flat.reshape(-1, dim)
    return out


def _check(table: pa.Table, k: int) -> None:
    """Cheap invariants of a validated table; a failure names the first bad request."""
    ids = table.column("request_id").to_numpy()
    n = pc.list_value_length(table.column("candidate_item_ids")).to_numpy()
    shown = pc.list_value_length(table.column("shown_order")).to_numpy()
    problems = {
        f"fewer than k={k} candidates": n < k,
        f"shown_order does not have k={k} positions": shown != k,
    }
    for reason, bad in problems.items():
        if bad.any():
            first = int(ids[np.flatnonzero(bad)[0]])
            raise UserError(
                f"request {first}: {reason} ({int(bad.sum())} such requests); "
                "run `ecomrl logs ingest` to quarantine bad requests"
            )


def requests_from_table(table: pa.Table, spec: LogSpec, k: int) -> Requests:
    """Padded `Requests` from validated `rerank_lists` rows (sorted by request id)."""
    if table.num_rows == 0:
        raise UserError("no re-ranking requests to read")
    table = table.sort_by("request_id")
    _check(table, k)
    sizes = pc.list_value_length(table.column("candidate_item_ids")).to_numpy()
    width = int(sizes.max())
    prices = _padded(table.column("candidate_prices"), width, 0.0, np.float32)
    valid = np.arange(width)[None, :] < sizes[:, None]
    features = _features(table.column("candidate_features"), width, spec.rerank_feature_dim)
    attrs = _padded(table.column("customer_attrs"), spec.n_attrs, 0, np.int16)
    query = table.column("query_category").to_numpy().astype(np.int16)
    items, quantile = item_inputs(features, prices, valid)
    return Requests(
        request_id=table.column("request_id").to_numpy().astype(np.int64),
        attrs=attrs,
        query=query,
        features=features,
        prices=prices,
        valid=valid,
        shown=_padded(table.column("shown_order"), k, 0, np.int64),
        clicks=_padded(table.column("click_labels"), k, 0, np.int8),
        pays=_padded(table.column("pay_labels"), k, 0, np.int8),
        user=user_vector(spec, attrs, query),
        items=items,
        price_quantile=quantile,
    )


def load_requests(root: str | Path, k: int = 17) -> tuple[Requests, LogSpec]:
    """The validated `rerank_lists` table that `ecomrl logs ingest` wrote under `root` (the
    ingest output directory, or the table directory itself)."""
    root = Path(root)
    directory = root if root.name == RERANK_LISTS else root / RERANK_LISTS
    if not directory.is_dir():
        raise UserError(
            f"{directory}: no validated re-ranking requests; run `ecomrl logs ingest` on logs "
            "that hold a rerank_lists table"
        )
    table = pq.read_table(directory)
    _, spec = read_contract(table.schema, str(directory))
    return requests_from_table(table, spec, k), spec
