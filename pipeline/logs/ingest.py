"""`ecomrl logs ingest`: page views -> validated, user-sharded training tables, on Ray Data;
re-ranking requests, when the logs hold them, -> a validated `rerank_lists` table.

Two streaming passes, neither holds the dataset in one process:

A. one Ray Data task per parquet row group: read it, validate rows (`validate.py`), write the
   bad ones to the quarantine table, tag the good ones with a bucket (hash of session id) and
   write them to a staging area partitioned by bucket. A row group of `rerank_lists` is
   validated in the same pass (`validate_rerank.py`): its good rows go straight to the output
   in the contract schema, its bad ones to quarantine with reasons prefixed "rerank_lists: ";
B. one task per bucket (a bucket holds whole sessions, at most ~`rows_per_bucket` rows, so
   memory does not grow with the data): session checks and the three training tables
   (`sessions.py`), each written partitioned by shard = hash of user id.

Every row read ends either in the training tables or in quarantine; the run checks that
rows read = accepted + quarantined, for page views and re-ranking requests apart, and logs the
counts. A quarantined row keeps its source file
and row number and the row as JSON (for session-level rejects, without the displayed items,
which stage A already dropped).

Output layout under OUT:
    engine_transitions/shard=NNNN/part-BBBBB.parquet
    customer_transitions/shard=NNNN/part-BBBBB.parquet
    customer_features/shard=NNNN/part-BBBBB.parquet
    rerank_lists/part-fFFFFF-gGGGGG.parquet   (one per row group; only when the logs have it)
    quarantine/*.parquet            (source_file, row, reason, row_json)
    ingest_summary.json
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import IngestConfig, OnBadFile
from pipeline.errors import UserError
from pipeline.logs.discover import (
    BadFile,
    Discovery,
    LogFile,
    discover,
    list_parquet_files,
    table_root,
)
from pipeline.logs.parquet import write_table
from pipeline.logs.schema import (
    CUSTOMER_FEATURES,
    CUSTOMER_TRANSITIONS,
    ENGINE_TRANSITIONS,
    PAGE_VIEWS,
    QUARANTINE,
    RERANK_LISTS,
    LogSpec,
    RewardColumn,
    quarantine_schema,
)
from pipeline.logs.sessions import sessionize
from pipeline.logs.sharding import bucket_of
from pipeline.logs.validate import Validated, rows_as_json, validate_page_views
from pipeline.logs.validate_rerank import validate_rerank_lists
from pipeline.paths import prepare_out

STAGING = "_staging"
# The items shown and their prices are validated, but no training table uses them (turnover
# comes from purchase_amount): they stop at stage A, which saves a third of the bytes after it.
DISPLAYED_ITEMS = ("item_ids", "item_prices")
SUMMARY_FILE = "ingest_summary.json"
# Every quarantine reason of a re-ranking request starts with it: the quarantine table is shared,
# the counts are per table.
RERANK_PREFIX = f"{RERANK_LISTS}: "


@dataclass(frozen=True)
class IngestSummary:
    source: str
    out: str
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    files_read: int
    files_quarantined: int
    sessions: int
    shards: int
    buckets: int
    reward: str
    seconds: float
    ray_start_seconds: float
    quarantine_reasons: dict[str, int]
    # Re-ranking requests (0 when the logs have no rerank_lists table); the fields above count
    # page views only.
    rerank_rows_read: int = 0
    rerank_rows_accepted: int = 0
    rerank_rows_quarantined: int = 0
    rerank_files_read: int = 0
    rerank_files_quarantined: int = 0

    def metrics(self) -> dict[str, float]:
        keys = (
            "rows_read",
            "rows_accepted",
            "rows_quarantined",
            "files_read",
            "files_quarantined",
            "sessions",
            "seconds",
            "rerank_rows_read",
            "rerank_rows_accepted",
            "rerank_rows_quarantined",
        )
        return {k: float(getattr(self, k)) for k in keys}


def _write_quarantine(path: Path, spec: LogSpec, source: str, rows, reasons, row_json) -> None:
    table = pa.Table.from_pydict(
        {"source_file": [source] * len(rows), "row": rows, "reason": reasons, "row_json": row_json},
        schema=quarantine_schema(spec),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, path)


def _date_column(date: str | None, table: pa.Table) -> pa.Array:
    """The Hive partition date of the file, or the row's own UTC date when the path has none."""
    if date is not None:
        return pa.repeat(pa.scalar(date, pa.string()), table.num_rows)
    return pc.strftime(table.column("ts"), format="%Y-%m-%d").combine_chunks()


def _read_group(
    log_file: LogFile, group: int, first_row: int, spec: LogSpec, quarantine: Path, prefix: str
) -> pa.Table | None:
    """One row group of a file, or None after quarantining all its rows as unreadable."""
    try:
        return pq.ParquetFile(log_file.path).read_row_group(group)
    except (pa.ArrowException, OSError) as exc:
        n = log_file.row_group_rows[group]
        _write_quarantine(
            quarantine,
            spec,
            str(log_file.path),
            list(range(first_row, first_row + n)),
            [f"{prefix}unreadable row group {group}: {exc}"] * n,
            [None] * n,
        )
        return None


def _task_position(batch: pa.Table) -> tuple[int, int, int, str]:
    file_id, group, first_row = (
        batch.column(c)[0].as_py() for c in ("file_id", "group", "first_row")
    )
    return file_id, group, first_row, f"f{file_id:05d}-g{group:05d}"


def _validate_row_group(
    batch: pa.Table,
    *,
    files: list[LogFile],
    spec: LogSpec,
    reward: RewardColumn,
    buckets: int,
    out: str,
) -> int:
    """Stage A for one row group: good rows, tagged with their source position, to the staging
    file of their bucket; bad rows to quarantine. Returns the number of good rows."""
    file_id, group, first_row, stem = _task_position(batch)
    log_file = files[file_id]
    quarantine = Path(out) / QUARANTINE / f"a-{stem}.parquet"
    raw = _read_group(log_file, group, first_row, spec, quarantine, prefix="")
    if raw is None:
        return 0
    checked = validate_page_views(raw, spec, reward)
    _quarantine_rejected(quarantine, spec, log_file, first_row, raw, checked, prefix="")
    good = (
        checked.good.drop_columns(list(DISPLAYED_ITEMS))
        .append_column("date", _date_column(log_file.date, checked.good))
        .append_column("_file_id", pa.array(np.full(checked.good.num_rows, file_id, np.int32)))
        .append_column("_row", pa.array(checked.good_index + first_row, pa.int64()))
    )
    bucket = bucket_of(good.column("session_id").to_numpy(), buckets)
    _write_staging(good, bucket, Path(out) / STAGING, f"{stem}.arrow")
    return good.num_rows


def _validate_rerank_group(
    batch: pa.Table, *, files: list[LogFile], spec: LogSpec, k: int, out: str
) -> int:
    """Stage A for one row group of `rerank_lists`: good rows, in the contract schema (its
    metadata included), to `rerank_lists/part-<stem>.parquet`; bad rows to quarantine with the
    table's prefix. Returns the number of good rows."""
    file_id, group, first_row, stem = _task_position(batch)
    log_file = files[file_id]
    quarantine = Path(out) / QUARANTINE / f"r-{stem}.parquet"
    raw = _read_group(log_file, group, first_row, spec, quarantine, prefix=RERANK_PREFIX)
    if raw is None:
        return 0
    checked = validate_rerank_lists(raw, spec, k)
    _quarantine_rejected(quarantine, spec, log_file, first_row, raw, checked, RERANK_PREFIX)
    path = Path(out) / RERANK_LISTS / f"part-{stem}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(checked.good, path)
    return checked.good.num_rows


def _quarantine_rejected(
    path: Path,
    spec: LogSpec,
    log_file: LogFile,
    first_row: int,
    raw: pa.Table,
    checked: Validated,
    prefix: str,
) -> None:
    """The rows `checked` rejected, to the quarantine file `path`, reasons after `prefix`."""
    if len(checked.bad_index):
        _write_quarantine(
            path,
            spec,
            str(log_file.path),
            (checked.bad_index + first_row).tolist(),
            [prefix + reason for reason in checked.bad_reasons],
            rows_as_json(raw, checked.bad_index),
        )


def _validate_task(batch: pa.Table, *, page_views: dict, rerank: dict) -> pa.Table:
    """Stage A's task: one row group of either table. Returns (table, good rows)."""
    table = batch.column("table")[0].as_py()
    if table == RERANK_LISTS:
        good = _validate_rerank_group(batch, **rerank)
    else:
        good = _validate_row_group(batch, **page_views)
    return pa.table({"table": [table], "good": [good]})


def _partitions(key: np.ndarray):
    """(value, start, stop) of each run of equal values in a sorted `key`."""
    if len(key) == 0:
        return
    bounds = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    for lo, hi in itertools.pairwise(bounds):
        yield key[lo], lo, hi


def _sorted_by(table: pa.Table, key: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    if np.any(key[1:] < key[:-1]):
        order = np.argsort(key, kind="stable")
        return table.take(order), key[order]
    return table, key


def _write_staging(table: pa.Table, bucket: np.ndarray, root: Path, name: str) -> None:
    """Arrow IPC files, one per bucket: staging is written once, memory-mapped once, deleted;
    parquet's encoding would cost more than the rest of the pass."""
    table, bucket = _sorted_by(table, bucket)
    for value, lo, hi in _partitions(bucket):
        path = root / f"bucket={value}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table.slice(lo, hi - lo))


def _read_staging(directory: Path) -> pa.Table:
    tables = [
        pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in sorted(directory.iterdir())
    ]
    return pa.concat_tables(tables)


def _write_sharded(table: pa.Table, shard: np.ndarray, root: Path, name: str) -> None:
    table, shard = _sorted_by(table, shard)
    for value, lo, hi in _partitions(shard):
        path = root / f"shard={value:04d}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(table.slice(lo, hi - lo), path)


def _sessionize_bucket(
    batch: pa.Table,
    *,
    files: list[LogFile],
    spec: LogSpec,
    reward: RewardColumn,
    shards: int,
    out: str,
) -> pa.Table:
    """Stage B for one bucket: session checks, the training tables, per-bucket stats."""
    bucket = batch.column("bucket")[0].as_py()
    src = Path(out) / STAGING / f"bucket={bucket}"
    if not src.exists():
        return pa.table({"bucket": [bucket], "accepted": [0], "quarantined": [0], "sessions": [0]})
    rows = _read_staging(src)
    result = sessionize(rows, spec, reward, shards)
    name = f"part-{bucket:05d}.parquet"
    for table, shard, root in (
        (result.engine_transitions, result.shard, ENGINE_TRANSITIONS),
        (result.customer_transitions, result.shard, CUSTOMER_TRANSITIONS),
        (result.customer_features, result.feature_shard, CUSTOMER_FEATURES),
    ):
        _write_sharded(table, shard, Path(out) / root, name)
    if result.rejected.num_rows:
        bad = result.rejected
        sources = [str(files[i].path) for i in bad.column("_file_id").to_pylist()]
        table = pa.Table.from_pydict(
            {
                "source_file": sources,
                "row": bad.column("_row"),
                "reason": result.rejected_reasons,
                "row_json": rows_as_json(
                    bad.drop_columns(["_file_id", "_row"]), np.arange(len(bad))
                ),
            },
            schema=quarantine_schema(spec),
        )
        write_table(table, Path(out) / QUARANTINE / f"b-{bucket:05d}.parquet")
    return pa.table(
        {
            "bucket": [bucket],
            "accepted": [result.engine_transitions.num_rows],
            "quarantined": [result.rejected.num_rows],
            "sessions": [result.customer_features.num_rows],
        }
    )


def _check_bad_files(bad: list[BadFile], config: IngestConfig) -> None:
    if bad and config.on_bad_file is OnBadFile.FAIL:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(
            f"{bad[0].reason}{more}; pass --on-bad-file quarantine to set bad files aside"
        )


def _quarantine_bad_files(
    bad: list[BadFile], out: Path, spec: LogSpec, name: str = "file", prefix: str = ""
) -> None:
    for i, b in enumerate(bad):
        _write_quarantine(
            out / QUARANTINE / f"{name}-{i:05d}.parquet",
            spec,
            str(b.path),
            [-1],
            [prefix + b.reason],
            [None],
        )


def _discover_rerank(src: Path, config: IngestConfig) -> tuple[Discovery | None, list[BadFile]]:
    """The `rerank_lists` table next to the page views, if the logs hold one (None otherwise),
    and its bad files. A table none of whose files is readable is only bad files when they are
    quarantined (the page views can go on without it)."""
    root = table_root(src, RERANK_LISTS)
    if root == src or not list_parquet_files(root):
        return None, []
    try:
        found = discover(src, RERANK_LISTS)
    except UserError:
        if config.on_bad_file is OnBadFile.FAIL:
            raise
        # Each file alone: discover names its problem.
        bad = []
        for path in list_parquet_files(root):
            try:
                discover(path, RERANK_LISTS)
            except UserError as exc:
                bad.append(BadFile(path, str(exc)))
        return None, bad
    return found, found.bad_files


def _reason_kind(reason: str) -> str:
    """Group reasons by wording, not values: 'page_index 12 ...' -> 'page_index # ...'."""
    return re.sub(r"'[^']*'|-?\d+(\.\d+)?", "#", reason)


@dataclass
class _Quarantined:
    rows: Counter  # table -> quarantined rows
    files: Counter  # table -> quarantined whole files
    kinds: Counter  # reason kind -> entries


def _quarantine_counts(out: Path) -> _Quarantined:
    """Quarantine entries per table (a re-ranking request's reason has `RERANK_PREFIX`)."""
    counts = _Quarantined(Counter(), Counter(), Counter())
    for path in sorted((out / QUARANTINE).glob("*.parquet")):
        table = pq.read_table(path, columns=["row", "reason"])
        rerank = pc.starts_with(table.column("reason"), RERANK_PREFIX).to_numpy(
            zero_copy_only=False
        )
        whole = pc.equal(table.column("row"), -1).to_numpy(zero_copy_only=False)
        for name, mine in ((PAGE_VIEWS, ~rerank), (RERANK_LISTS, rerank)):
            counts.files[name] += int((mine & whole).sum())
            counts.rows[name] += int((mine & ~whole).sum())
        counts.kinds.update(_reason_kind(r) for r in table.column("reason").to_pylist())
    return counts


def _tasks(files: list[LogFile], table: str = PAGE_VIEWS) -> list[dict]:
    tasks = []
    for file_id, log_file in enumerate(files):
        first = 0
        for group, n in enumerate(log_file.row_group_rows):
            tasks.append({"table": table, "file_id": file_id, "group": group, "first_row": first})
            first += n
    return tasks


def ingest_logs(
    src: str | Path, out: str | Path, config: IngestConfig | None = None, progress: bool = True
) -> IngestSummary:
    """Validate and shard the `page_views` under `src` into training tables under `out`, and
    validate its `rerank_lists` table, if any, into `out/rerank_lists`."""
    import ray
    import ray.data

    from pipeline.ray_runtime import data_context, ensure_ray, warm_workers

    config = config or IngestConfig()
    started = time.perf_counter()
    out = Path(out)
    found = discover(src, PAGE_VIEWS)
    _check_bad_files(found.bad_files, config)
    if found.num_rows == 0:
        raise UserError(f"{src}: empty dataset (0 page views in {len(found.files)} file(s))")
    rerank, rerank_bad = _discover_rerank(Path(src), config)
    _check_bad_files(rerank_bad, config)
    ray_started = time.perf_counter()
    ensure_ray()
    ray_seconds = time.perf_counter() - ray_started
    warming = warm_workers("ray.data", __name__)  # while the driver clears the output directory
    prepare_out(out, config.overwrite)
    _quarantine_bad_files(found.bad_files, out, found.spec)
    _quarantine_bad_files(rerank_bad, out, found.spec, "rerank-file", RERANK_PREFIX)
    buckets = max(config.shards, math.ceil(found.num_rows / config.rows_per_bucket))
    common = {"files": found.files, "spec": found.spec, "reward": config.reward, "out": str(out)}
    tasks = _tasks(found.files)
    rerank_args = {}
    if rerank is not None:
        tasks += _tasks(rerank.files, RERANK_LISTS)
        rerank_args = {
            "files": rerank.files,
            "spec": rerank.spec,
            "k": config.rerank_k,
            "out": str(out),
        }
    ray.get(warming)
    with data_context(progress):
        validated = (
            ray.data.from_items(tasks, override_num_blocks=len(tasks))
            .map_batches(
                _validate_task,
                batch_size=1,
                batch_format="pyarrow",
                fn_kwargs={
                    "page_views": {**common, "buckets": buckets},
                    "rerank": rerank_args,
                },
            )
            .take_all()
        )
        stats = (
            ray.data.from_items(
                [{"bucket": b} for b in range(buckets)], override_num_blocks=buckets
            )
            .map_batches(
                _sessionize_bucket,
                batch_size=1,
                batch_format="pyarrow",
                fn_kwargs={**common, "shards": config.shards},
            )
            .take_all()
        )
    shutil.rmtree(out / STAGING, ignore_errors=True)

    quarantined = _quarantine_counts(out)
    summary = IngestSummary(
        source=str(src),
        out=str(out),
        rows_read=found.num_rows,
        rows_accepted=sum(s["accepted"] for s in stats),
        rows_quarantined=quarantined.rows[PAGE_VIEWS],
        files_read=len(found.files),
        files_quarantined=quarantined.files[PAGE_VIEWS],
        sessions=sum(s["sessions"] for s in stats),
        shards=config.shards,
        buckets=buckets,
        reward=config.reward.value,
        seconds=round(time.perf_counter() - started, 3),
        ray_start_seconds=round(ray_seconds, 3),
        quarantine_reasons=dict(quarantined.kinds.most_common()),
        rerank_rows_read=rerank.num_rows if rerank else 0,
        rerank_rows_accepted=sum(v["good"] for v in validated if v["table"] == RERANK_LISTS),
        rerank_rows_quarantined=quarantined.rows[RERANK_LISTS],
        rerank_files_read=len(rerank.files) if rerank else 0,
        rerank_files_quarantined=quarantined.files[RERANK_LISTS],
    )
    if summary.rows_read != summary.rows_accepted + summary.rows_quarantined or (
        summary.rerank_rows_read != summary.rerank_rows_accepted + summary.rerank_rows_quarantined
    ):
        raise RuntimeError(f"ingest lost rows: {summary}")  # a bug, never bad input
    (out / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=2))
    return summary
