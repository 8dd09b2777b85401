"""The engine's observation s, encoded from contract columns.

Paper ("Problem Description"): the engine observes the customer feature with its request; the
customer MDP adds the page index n. We also give the engine the last page's feedback (clicks),
as the environment of the simulator issue does. One encoding, used by the reference world's
deployment API, the simulator environment and the supervised baselines, so a policy trained in
one place can be scored in another:

    [ one-hot(customer_attrs[g]) for each group g | one-hot(query_category) |
      customer_dense (null -> 0) | page_index / max_index | last_clicks / page_size ]
"""

from __future__ import annotations

import numpy as np

from pipeline.logs.schema import LogSpec


def observation_dim(spec: LogSpec) -> int:
    return sum(spec.attr_cardinalities) + spec.n_query_categories + spec.dense_dim + 2


def encode_observation(
    spec: LogSpec,
    attrs: np.ndarray,
    query: np.ndarray,
    dense: np.ndarray,
    page_index: np.ndarray,
    last_clicks: np.ndarray,
) -> np.ndarray:
    """Encode a batch: attrs (B, G) int, query (B,), dense (B, D) with NaN for null, page_index
    (B,), last_clicks (B,). Returns float32 (B, observation_dim(spec))."""
    n = attrs.shape[0]
    out = np.zeros((n, observation_dim(spec)), dtype=np.float32)
    offsets = np.cumsum((0, *spec.attr_cardinalities[:-1]))
    rows = np.arange(n)[:, None]
    out[rows, attrs.astype(np.int64) + offsets] = 1.0
    q0 = sum(spec.attr_cardinalities)
    out[np.arange(n), q0 + query.astype(np.int64)] = 1.0
    d0 = q0 + spec.n_query_categories
    out[:, d0 : d0 + spec.dense_dim] = np.nan_to_num(dense, nan=0.0)
    out[:, -2] = page_index / max(spec.max_index, 1)
    out[:, -1] = last_clicks / spec.page_size
    return out
