"""`ecomrl logs inspect PATH`: schema, partitions, row counts and per-column statistics.

Works on any table of the contract (page_views, rerank_lists, the training tables, quarantine).
Statistics are accumulated batch by batch over a streaming scan, never a whole table in memory.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.logs.discover import list_parquet_files
from pipeline.logs.schema import TABLES, LogSpec, read_contract

MAX_DISTINCT = 1000


def _iso(ms: float) -> str:
    return str(np.datetime64(int(ms), "ms"))


@dataclass
class ColumnStats:
    """Running statistics of one column; list columns are described by their values."""

    name: str
    type: str
    rows: int = 0
    nulls: int = 0
    values: int = 0
    non_finite: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    top: Counter = field(default_factory=Counter)
    many_distinct: bool = False

    def update(self, column: pa.ChunkedArray) -> None:
        self.rows += len(column)
        self.nulls += column.null_count
        values = column
        while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type):
            values = pc.list_flatten(values)
        kind = values.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
            if not self.many_distinct:
                counts = pc.value_counts(values)
                self.top.update(
                    dict(
                        zip(
                            counts.field("values").to_pylist(),
                            counts.field("counts").to_pylist(),
                            strict=True,
                        )
                    )
                )
                # Free text (quarantined row JSON) is not worth counting value by value.
                self.many_distinct = len(self.top) > MAX_DISTINCT
            return
        if pa.types.is_timestamp(kind):
            values = pc.cast(pc.cast(values, pa.timestamp("ms", tz=kind.tz)), pa.int64())
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_timestamp(kind)
        ):
            return
        array = values.drop_null().to_numpy().astype(np.float64) if len(values) else np.zeros(0)
        finite = np.isfinite(array)
        self.non_finite += int((~finite).sum())
        array = array[finite]
        self.values += array.size
        if array.size:
            self.total += float(array.sum())
            self.low = min(self.low, float(array.min()))
            self.high = max(self.high, float(array.max()))

    def as_dict(self) -> dict:
        out: dict = {"type": self.type, "rows": self.rows, "nulls": self.nulls}
        if self.many_distinct:
            out["distinct"] = f">{MAX_DISTINCT}"
        elif self.top:
            out["top"] = dict(self.top.most_common(5))
            out["distinct"] = len(self.top)
        elif self.values and self.type.startswith("timestamp"):
            out.update(min=_iso(self.low), max=_iso(self.high))
        elif self.values:
            out.update(min=self.low, max=self.high, mean=self.total / self.values)
            if self.non_finite:
                out["non_finite"] = self.non_finite
        return out


@dataclass
class TableReport:
    table: str
    root: str
    schema: pa.Schema
    spec: LogSpec
    files: int
    rows: int
    partitions: dict[str, dict[str, int]]  # "date=2026-01-01" -> {"files": n, "rows": m}
    columns: dict[str, dict]

    def as_dict(self) -> dict:
        return {
            "table": self.table,
            "root": self.root,
            "files": self.files,
            "rows": self.rows,
            "schema_version": self.schema.metadata[b"ecomrl.schema_version"].decode(),
            "spec": self.spec.model_dump(),
            "schema": {f.name: str(f.type) for f in self.schema},
            "partitions": self.partitions,
            "columns": self.columns,
        }


def _partition_key(path: Path, root: Path) -> str:
    parts = [p for p in path.relative_to(root).parts[:-1] if "=" in p]
    return "/".join(parts) or "(none)"


def inspect_table(root: Path) -> TableReport:
    files = list_parquet_files(root)
    if not files:
        raise UserError(f"{root}: empty dataset (no files)")
    table, spec, schema = None, None, None
    partitions: dict[str, dict[str, int]] = {}
    stats: dict[str, ColumnStats] = {}
    for path in files:
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"{path}: not a readable parquet file ({exc})") from exc
        found_table, found_spec = read_contract(parquet.schema_arrow, str(path))
        table, spec, schema = (
            table or found_table,
            spec or found_spec,
            schema or parquet.schema_arrow,
        )
        if found_table != table:
            raise UserError(f"{path}: holds table {found_table!r}, the others hold {table!r}")
        part = partitions.setdefault(
            _partition_key(path, root if root.is_dir() else path.parent), {"files": 0, "rows": 0}
        )
        part["files"] += 1
        part["rows"] += parquet.metadata.num_rows
        for batch in parquet.iter_batches(batch_size=65_536):
            for name in batch.schema.names:
                column = stats.setdefault(
                    name, ColumnStats(name, str(batch.schema.field(name).type))
                )
                column.update(pa.chunked_array([batch.column(name)]))
    rows = sum(p["rows"] for p in partitions.values())
    if rows == 0:
        raise UserError(f"{root}: empty dataset (0 rows in {len(files)} file(s))")
    return TableReport(
        table,
        str(root),
        schema,
        spec,
        len(files),
        rows,
        partitions,
        {name: s.as_dict() for name, s in stats.items()},
    )


def inspect_logs(path: str | Path) -> list[TableReport]:
    """Inspect `path`: a dataset root holding table directories, a table directory or a file."""
    root = Path(path)
    if not root.exists():
        raise UserError(f"{root}: no such file or directory")
    tables = [root / t for t in TABLES if (root / t).is_dir()]
    return [inspect_table(t) for t in tables] if tables else [inspect_table(root)]
