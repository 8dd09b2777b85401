"""Customers with their request: the part of the engine's state s that P^c generates.

A customer is one code per categorical attribute group, a query category and the dense
features. Density models (GAN-SD and its baselines) work on a flat vector: the one-hot of every
categorical group (query included), then the dense features standardised by the training data's
mean and standard deviation. `CustomerCodec` converts both ways.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from pipeline.logs.observation import encode_observation
from pipeline.logs.schema import LogSpec


@dataclass(frozen=True)
class Customers:
    """A batch of customers: attrs (N, G) int64, query (N,) int64, dense (N, D) float32."""

    attrs: np.ndarray
    query: np.ndarray
    dense: np.ndarray

    def __len__(self) -> int:
        return len(self.query)

    def take(self, index: np.ndarray) -> Customers:
        return Customers(self.attrs[index], self.query[index], self.dense[index])

    @classmethod
    def concat(cls, parts: list[Customers]) -> Customers:
        return cls(
            np.concatenate([p.attrs for p in parts]),
            np.concatenate([p.query for p in parts]),
            np.concatenate([p.dense for p in parts]),
        )

    def categorical(self) -> np.ndarray:
        """(N, G + 1) codes: the attribute groups, then the query category."""
        return np.column_stack([self.attrs, self.query])

    def observation(self, spec: LogSpec, page_index: np.ndarray, last_clicks: np.ndarray):
        """The engine's observation s (pipeline/logs/observation.py) of these customers."""
        return encode_observation(spec, self.attrs, self.query, self.dense, page_index, last_clicks)


@dataclass(frozen=True)
class CustomerCodec:
    """Customers <-> the flat vector density models learn: [one-hots | standardised dense]."""

    group_sizes: tuple[int, ...]  # attribute cardinalities, then the number of query categories
    dense_mean: tuple[float, ...]
    dense_std: tuple[float, ...]

    @classmethod
    def fit(cls, spec: LogSpec, customers: Customers) -> CustomerCodec:
        std = customers.dense.std(axis=0)
        return cls(
            group_sizes=(*spec.attr_cardinalities, spec.n_query_categories),
            dense_mean=tuple(float(v) for v in customers.dense.mean(axis=0)),
            # A constant dense feature (or an all-null one, stored as 0) keeps unit scale.
            dense_std=tuple(float(v) if v > 1e-6 else 1.0 for v in std),
        )

    @property
    def categorical_dim(self) -> int:
        return sum(self.group_sizes)

    @property
    def dense_dim(self) -> int:
        return len(self.dense_mean)

    @property
    def dim(self) -> int:
        return self.categorical_dim + self.dense_dim

    def group_slices(self) -> list[slice]:
        edges = np.cumsum((0, *self.group_sizes))
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]

    def encode(self, customers: Customers) -> np.ndarray:
        codes = customers.categorical()
        out = np.zeros((len(customers), self.dim), dtype=np.float32)
        offsets = np.cumsum((0, *self.group_sizes[:-1]))
        out[np.arange(len(customers))[:, None], codes + offsets] = 1.0
        mean, std = np.asarray(self.dense_mean), np.asarray(self.dense_std)
        out[:, self.categorical_dim :] = (customers.dense - mean) / std
        return out

    def decode(self, vectors: np.ndarray) -> Customers:
        """Vectors (one-hot or any scores per group) -> customers: argmax per group."""
        codes = np.column_stack([vectors[:, s].argmax(axis=1) for s in self.group_slices()])
        mean, std = np.asarray(self.dense_mean), np.asarray(self.dense_std)
        dense = vectors[:, self.categorical_dim :] * std + mean
        return Customers(codes[:, :-1], codes[:, -1], dense.astype(np.float32))

    def to_json(self) -> dict:
        return {
            "group_sizes": list(self.group_sizes),
            "dense_mean": list(self.dense_mean),
            "dense_std": list(self.dense_std),
        }

    @classmethod
    def from_json(cls, data: dict) -> CustomerCodec:
        return cls(tuple(data["group_sizes"]), tuple(data["dense_mean"]), tuple(data["dense_std"]))
