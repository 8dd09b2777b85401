"""The simulator's training data: the tables ingestion writes (pipeline/logs/ingest.py).

- `customer_features` (one row per session): what GAN-SD and its baselines learn, P^c;
- `engine_transitions` (one row per page view): the expert pairs (s^c, a^c) of MAIL and
  behaviour cloning, with s^c = <s, a, n> and a^c = (clicks, buy | turn_page | leave).
  These rows carry the last page's clicks that the engine observes, which `customer_transitions`
  does not, so both customer policies learn from them.

Everything is read with the columns it needs only. The fingerprint names the data a simulator
was built from: a hash over every file's path (relative to the root) and bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipeline.errors import UserError
from pipeline.logs.discover import list_parquet_files
from pipeline.logs.ingest import SUMMARY_FILE
from pipeline.logs.schema import (
    CUSTOMER_FEATURES,
    ENGINE_TRANSITIONS,
    CustomerAction,
    LogSpec,
    read_contract,
)
from pipeline.simulator.customers import Customers

# Customer decisions in the order of the policy's decision head.
DECISIONS: tuple[str, ...] = (
    CustomerAction.BUY.value,
    CustomerAction.TURN_PAGE.value,
    CustomerAction.LEAVE.value,
)
BUY, TURN_PAGE, LEAVE = range(3)
N_SLICES = 12  # two-hour slices of a day (paper, Figure 5)


@dataclass(frozen=True)
class Transitions:
    """Logged page views as the customer saw them: s^c and a^c, plus the purchase amount."""

    customers: Customers
    page_index: np.ndarray  # (N,) int64
    last_clicks: np.ndarray  # (N,) int64
    engine_action: np.ndarray  # (N, A) float32
    clicks: np.ndarray  # (N,) int64, 0..page_size
    decision: np.ndarray  # (N,) int64, index into DECISIONS
    amount: np.ndarray  # (N,) float32, NaN where not logged

    def __len__(self) -> int:
        return len(self.decision)

    def take(self, index: np.ndarray) -> Transitions:
        return Transitions(
            self.customers.take(index),
            *(getattr(self, f)[index] for f in _TRANSITION_ARRAYS),
        )

    def observation(self, spec: LogSpec) -> np.ndarray:
        return self.customers.observation(spec, self.page_index, self.last_clicks)


_TRANSITION_ARRAYS = ("page_index", "last_clicks", "engine_action", "clicks", "decision", "amount")


@dataclass(frozen=True)
class TrainingData:
    """An ingested trajectory directory: its spec and the fingerprint of its files."""

    root: Path
    spec: LogSpec
    fingerprint: str
    files: int

    def customers(
        self, scenario: str, time_slice: int | None = None
    ) -> tuple[Customers, np.ndarray]:
        """Logged customers of `scenario` (one per session) and whether each session bought."""
        table = _read(self, CUSTOMER_FEATURES, _filter(scenario, time_slice))
        purchased = table.column("purchased").fill_null(False).to_numpy(zero_copy_only=False)
        return _customers(table, self.spec), purchased

    def transitions(self, scenario: str, time_slice: int | None = None) -> Transitions:
        table = _read(self, ENGINE_TRANSITIONS, _filter(scenario, time_slice, from_ts=True))
        action = table.column("customer_action").to_numpy(zero_copy_only=False)
        decision = np.full(len(action), -1, dtype=np.int64)
        for code, name in enumerate(DECISIONS):
            decision[action == name] = code
        clicks = table.column("num_clicks").fill_null(0).to_numpy().astype(np.int64)
        amount = table.column("purchase_amount").to_numpy(zero_copy_only=False)
        return Transitions(
            customers=_customers(table, self.spec),
            page_index=table.column("page_index").to_numpy().astype(np.int64),
            last_clicks=table.column("last_clicks").to_numpy().astype(np.int64),
            engine_action=table.column("engine_action")
            .combine_chunks()
            .flatten()
            .to_numpy()
            .reshape(-1, self.spec.action_dim)
            .astype(np.float32),
            clicks=np.clip(clicks, 0, self.spec.page_size),
            decision=decision,
            amount=np.asarray(amount, dtype=np.float32),
        )


def _filter(scenario: str, time_slice: int | None, from_ts: bool = False) -> pc.Expression:
    where = pc.field("scenario") == scenario
    if time_slice is None:
        return where
    if not 0 <= time_slice < N_SLICES:
        raise UserError(f"time slice {time_slice} is outside 0..{N_SLICES - 1}")
    if from_ts:
        return where & (pc.divide(pc.hour(pc.field("ts")), 2) == time_slice)
    return where & (pc.field("time_slice") == time_slice)


def _customers(table: pa.Table, spec: LogSpec) -> Customers:
    attrs = table.column("customer_attrs").combine_chunks().flatten().to_numpy()
    dense = table.column("customer_dense").combine_chunks()
    valid = dense.is_valid().to_numpy(zero_copy_only=False)
    values = np.zeros((len(table), spec.dense_dim), dtype=np.float32)
    if valid.any():
        values[valid] = dense.drop_null().flatten().to_numpy().reshape(-1, spec.dense_dim)
    return Customers(
        attrs=attrs.reshape(-1, spec.n_attrs).astype(np.int64),
        query=table.column("query_category").to_numpy().astype(np.int64),
        dense=np.nan_to_num(values, nan=0.0),
    )


def _read(data: TrainingData, table: str, where: pc.Expression) -> pa.Table:
    dataset = ds.dataset(data.root / table, format="parquet", partitioning="hive")
    out = dataset.to_table(filter=where)
    if out.num_rows == 0:
        raise UserError(f"{data.root / table}: no rows where {where}")
    return out


def _fingerprint(root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _empty_message(root: Path) -> str:
    summary = root / SUMMARY_FILE
    if summary.is_file():
        counts = json.loads(summary.read_text())
        return (
            f"{root}: no accepted page views to build a simulator from "
            f"({counts.get('rows_read', 0)} read, {counts.get('rows_quarantined', 0)} "
            f"quarantined: see {root / 'quarantine'})"
        )
    tables = f"{ENGINE_TRANSITIONS} or {CUSTOMER_FEATURES}"
    return f"{root}: no {tables} files (is it the output of `ecomrl logs ingest`?)"


def open_training_data(root: Path) -> TrainingData:
    """Check an ingested directory (contract, one spec) and fingerprint it."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such directory")
    files: list[Path] = []
    specs: set[LogSpec] = set()
    for table in (CUSTOMER_FEATURES, ENGINE_TRANSITIONS):
        found = list_parquet_files(root / table) if (root / table).is_dir() else []
        if not found:
            raise UserError(_empty_message(root))
        for path in found:
            found_table, spec = read_contract(ds.dataset(path).schema, str(path))
            if found_table != table:
                raise UserError(f"{path}: holds table {found_table!r}, expected {table!r}")
            specs.add(spec)
        files += found
    if len(specs) > 1:
        raise UserError(f"{root}: files of more than one log spec ({len(specs)} different)")
    return TrainingData(root, specs.pop(), _fingerprint(root, files), len(files))
