"""Find the parquet files of a log table and check each file's contract from its footer.

Only footers are read here (cheap, driver-side): row counts, row groups, schema version, spec.
A file-level problem (missing path, not parquet, truncated, wrong schema version, another
table, a spec that differs from the other files) is a `BadFile`; the caller decides whether it
stops the run or goes to quarantine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.logs.schema import ContractError, LogSpec, read_contract

_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class LogFile:
    """A readable file of the table: where it is, its partition date and its row groups."""

    path: Path
    date: str | None
    num_rows: int
    row_group_rows: tuple[int, ...]
    schema: pa.Schema


@dataclass(frozen=True)
class BadFile:
    path: Path
    reason: str


@dataclass(frozen=True)
class Discovery:
    table: str
    spec: LogSpec
    files: list[LogFile]
    bad_files: list[BadFile]

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)


def table_root(path: Path, table: str) -> Path:
    """Accept the dataset root (holding `table/`) or the table directory or a single file."""
    return path / table if (path / table).is_dir() else path


def list_parquet_files(root: Path) -> list[Path]:
    if not root.exists():
        raise UserError(f"{root}: no such file or directory")
    if root.is_file():
        return [root]
    # Hidden and underscore-prefixed entries are writer bookkeeping (_SUCCESS, .crc), not data.
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )


def partition_date(path: Path) -> str | None:
    for part in reversed(path.parts):
        match = _DATE_DIR.match(part)
        if match:
            return match.group(1)
    return None


def _inspect_file(path: Path) -> tuple[LogFile, str, LogSpec]:
    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ContractError(f"{path}: not a readable parquet file ({reason})") from exc
    table, spec = read_contract(schema, str(path))
    row_groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    return LogFile(path, partition_date(path), meta.num_rows, row_groups, schema), table, spec


def discover(path: str | Path, table: str) -> Discovery:
    """Check every file of `table` under `path`. Raises `UserError` when nothing usable is found."""
    root = table_root(Path(path), table)
    candidates = list_parquet_files(root)
    if not candidates:
        raise UserError(f"{root}: empty dataset (no files)")
    files: list[LogFile] = []
    bad: list[BadFile] = []
    spec: LogSpec | None = None
    for candidate in candidates:
        try:
            log_file, found_table, found_spec = _inspect_file(candidate)
        except ContractError as exc:
            bad.append(BadFile(candidate, str(exc)))
            continue
        if found_table != table:
            bad.append(
                BadFile(candidate, f"{candidate}: holds table {found_table!r}, not {table!r}")
            )
        elif spec is not None and found_spec != spec:
            bad.append(BadFile(candidate, f"{candidate}: its spec differs from {files[0].path}"))
        else:
            spec = found_spec
            files.append(log_file)
    if spec is None:
        first = bad[0].reason if bad else f"{root}: no {table} files"
        raise UserError(first if len(bad) == 1 else f"no readable {table} file; first: {first}")
    return Discovery(table, spec, files, bad)
