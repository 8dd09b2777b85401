"""Ingestion on Ray Data: good rows kept and transformed right, every bad row quarantined with
its reason, counts that add up."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import factory
from pipeline.config import IngestConfig, OnBadFile
from pipeline.errors import UserError
from pipeline.logs.ingest import ingest_logs
from pipeline.logs.schema import META_VERSION, RewardColumn
from pipeline.logs.sharding import shard_of

pytestmark = pytest.mark.usefixtures("ray_session")


def read(out, table: str) -> pa.Table:
    return pads.dataset(out / table, partitioning="hive").to_table()


def quarantine(out) -> list[dict]:
    return pads.dataset(out / "quarantine").to_table().to_pylist()


def set_value(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    index = table.schema.get_field_index(column)
    field = table.schema.field(index).with_nullable(True)
    return table.set_column(index, field, pa.array(values, field.type))


def test_good_logs_become_training_tables(tmp_path):
    logs = tmp_path / "logs"
    factory.write(factory.page_views(300, pages=3, seed=1), logs, row_group_size=250)
    factory.write(
        factory.page_views(200, pages=2, seed=2, first_session=300), logs, name="part-00001.parquet"
    )
    out = tmp_path / "out"
    summary = ingest_logs(logs, out, IngestConfig(shards=3, rows_per_bucket=1000))

    assert summary.rows_read == 1300 == summary.rows_accepted
    assert summary.rows_quarantined == 0 and summary.sessions == 500
    assert summary.buckets == 3  # max(shards, ceil(1300 / 1000))
    engine = read(out, "engine_transitions").sort_by(
        [("session_id", "ascending"), ("page_index", "ascending")]
    )
    assert engine.num_rows == 1300
    # Every user's rows live in one shard, the one its id hashes to.
    assert np.array_equal(
        engine.column("shard").to_numpy(), shard_of(engine.column("user_id").to_numpy(), 3)
    )
    s0 = engine.filter(pc.equal(engine.column("session_id"), 0)).to_pydict()
    assert s0["page_index"] == [0, 1, 2] and s0["next_page_index"] == [1, 2, 3]
    assert s0["done"] == [False, False, True]
    assert s0["last_clicks"] == [0, *s0["num_clicks"][:2]]
    assert s0["next_last_clicks"] == s0["num_clicks"]
    assert s0["reward"] == [float(p) for p in s0["purchase"]]
    assert s0["date"] == ["2026-01-01"] * 3

    features = read(out, "customer_features")
    assert features.num_rows == 500
    assert sorted(features.column("session_id").to_pylist()) == list(range(500))
    pages = dict(
        zip(
            features.column("session_id").to_pylist(),
            features.column("num_pages").to_pylist(),
            strict=True,
        )
    )
    assert pages[0] == 3 and pages[400] == 2
    customers = read(out, "customer_transitions")
    assert customers.num_rows == 1300
    assert set(customers.column("customer_action").to_pylist()) <= {"buy", "turn_page", "leave"}
    meta = pq.read_schema(next((out / "engine_transitions").rglob("*.parquet"))).metadata
    assert meta[META_VERSION] == b"1" and meta[b"ecomrl.reward"] == b"purchase"
    assert json.loads((out / "ingest_summary.json").read_text())["rows_accepted"] == 1300

    with pytest.raises(UserError, match="not empty"):
        ingest_logs(logs, out, IngestConfig())
    assert ingest_logs(logs, out, IngestConfig(overwrite=True)).rows_accepted == 1300


def corrupted_logs(root):
    """Sessions 0..29 of 3 pages (rows 3s, 3s+1, 3s+2). Returns {(file, row): reason part} of
    every row that must be quarantined."""
    t = factory.page_views(30, pages=3, seed=3)
    bad = {}

    def spoil(session: int, page: int, column: str, value, reason: str):
        nonlocal t
        t = set_value(t, column, 3 * session + page, value)
        bad[3 * session + page] = reason

    action = [0.0] * 27
    spoil(1, 2, "engine_action", [math.nan, *action[1:]], "non-finite engine_action")
    spoil(2, 2, "customer_dense", [math.inf, 0.0], "non-finite customer_dense")
    spoil(3, 2, "item_prices", [-1.0] + [5.0] * 9, "negative item price")
    spoil(4, 2, "customer_action", "clicked", "unknown feedback label 'clicked'")
    spoil(5, 2, "page_index", 12, "page_index 12 not in [0, MaxIndex=9]")
    spoil(6, 2, "num_clicks", 50, "num_clicks 50 not in [0, 10]")
    spoil(7, 2, "user_id", None, "null user_id")
    spoil(
        8, 2, "customer_attrs", [99] + [0] * 10, "customer_attrs[0] (history_turnover_level) = 99"
    )
    spoil(9, 2, "purchase", not t.column("purchase")[29].as_py(), "but customer_action=")
    # A session whose rows carry two users: it would straddle two users' shards.
    t = set_value(t, "user_id", 31, 999_999)
    bad.update({30: "spans users", 31: "spans users", 32: "spans users"})
    rows = t.to_pylist()
    # Session 11 loses page 1: page 2 follows a gap.
    del rows[34]
    bad[34] = "page_index gap"  # row 34 of the written file is session 11's page 2
    # Session 12's page 1 twice; the second copy is at the end of the file.
    rows.append(dict(rows[3 * 12 + 1 - 1]))
    bad[len(rows) - 1] = "duplicate page view"
    # Session 13 goes on after its last page ended the session.
    extra = dict(
        rows[3 * 13 + 2 - 1],
        page_index=3,
        customer_action="leave",
        purchase=False,
        purchase_amount=0.0,
    )
    rows.append(extra)
    bad[len(rows) - 1] = "after the end of session"
    main = factory.write(pa.Table.from_pylist(rows, schema=t.schema), root, row_group_size=40)

    # A file whose num_clicks column is text: castable values are kept, one is not.
    t2 = factory.page_views(4, pages=3, seed=4, first_session=100)
    clicks = [str(c) for c in t2.column("num_clicks").to_pylist()]
    clicks[5] = "x"
    t2 = t2.set_column(t2.schema.get_field_index("num_clicks"), "num_clicks", pa.array(clicks))
    text = factory.write(t2, root, name="part-text.parquet")
    # A file without purchase_amount: every row is quarantined, none silently completed.
    t3 = factory.page_views(2, pages=3, seed=5, first_session=200).drop_columns(["purchase_amount"])
    missing = factory.write(t3, root, name="part-missing.parquet")
    expected = {(str(main), r): why for r, why in bad.items()}
    expected[(str(text), 5)] = "column 'num_clicks': value is not int16"
    expected.update({(str(missing), r): "missing column 'purchase_amount'" for r in range(6)})
    return expected, len(rows) + 12 + 6


def test_every_bad_row_is_quarantined_with_its_reason(tmp_path):
    expected, total = corrupted_logs(tmp_path / "logs")
    out = tmp_path / "out"
    summary = ingest_logs(tmp_path / "logs", out, IngestConfig(shards=2))

    found = {(q["source_file"], q["row"]): q for q in quarantine(out)}
    assert set(found) == set(expected)
    for key, why in expected.items():
        assert why in found[key]["reason"], (key, found[key]["reason"])
        assert found[key]["row_json"]  # the rejected row itself is kept
    assert summary.rows_read == total
    assert summary.rows_quarantined == len(expected)
    assert summary.rows_accepted + summary.rows_quarantined == summary.rows_read
    engine = read(out, "engine_transitions")
    assert engine.num_rows == total - len(expected)
    assert not pc.any(pc.is_nan(pc.list_flatten(engine.column("engine_action")))).as_py()
    kept = set(
        zip(
            engine.column("session_id").to_pylist(),
            engine.column("page_index").to_pylist(),
            strict=True,
        )
    )
    assert (1, 1) in kept and (1, 2) not in kept  # the good part of a spoiled session stays
    assert (12, 1) in kept and (13, 2) in kept and (13, 3) not in kept
    assert not any(s == 10 for s, _ in kept)
    assert "missing column #" in " ".join(summary.quarantine_reasons)


def test_click_only_logs_are_valid_with_a_click_reward(tmp_path):
    t = factory.page_views(20, pages=2, seed=6)
    for column in ("purchase", "purchase_amount"):
        index = t.schema.get_field_index(column)
        t = t.set_column(
            index, t.schema.field(index), pa.nulls(t.num_rows, t.schema.field(index).type)
        )
    t = t.set_column(
        t.schema.get_field_index("customer_action"),
        "customer_action",
        pa.array(["turn_page", "leave"] * 20),
    )
    factory.write(t, tmp_path / "logs")
    summary = ingest_logs(
        tmp_path / "logs", tmp_path / "clicks", IngestConfig(reward=RewardColumn.CLICKS)
    )
    assert summary.rows_accepted == 40
    engine = read(tmp_path / "clicks", "engine_transitions")
    assert engine.column("reward").to_pylist() == [
        float(c) for c in engine.column("num_clicks").to_pylist()
    ]
    assert read(tmp_path / "clicks", "customer_features").column("purchased").null_count == 20

    summary = ingest_logs(tmp_path / "logs", tmp_path / "purchases", IngestConfig())
    assert summary.rows_accepted == 0 and summary.rows_quarantined == 40
    assert list(summary.quarantine_reasons) == ["reward column # is null"]


def test_bad_files_stop_the_run_or_go_to_quarantine(tmp_path):
    logs = tmp_path / "logs"
    factory.write(factory.page_views(10, seed=7), logs)
    good_bytes = (logs / "page_views/date=2026-01-01/part-00000.parquet").read_bytes()
    truncated = logs / "page_views/date=2026-01-02/part-00000.parquet"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(good_bytes[: len(good_bytes) // 2])

    with pytest.raises(UserError, match=str(truncated)):
        ingest_logs(logs, tmp_path / "strict", IngestConfig())
    summary = ingest_logs(
        logs, tmp_path / "lenient", IngestConfig(on_bad_file=OnBadFile.QUARANTINE)
    )
    assert summary.files_quarantined == 1 and summary.rows_accepted == summary.rows_read == 30
    (entry,) = quarantine(tmp_path / "lenient")
    assert entry["source_file"] == str(truncated) and entry["row"] == -1
    assert "not a readable parquet file" in entry["reason"]


def test_other_schema_version_is_a_file_error(tmp_path):
    t = factory.page_views(3)
    meta = dict(t.schema.metadata)
    meta[META_VERSION] = b"0"
    path = factory.write(t.replace_schema_metadata(meta), tmp_path / "logs")
    with pytest.raises(UserError, match=rf"{path}: schema version '0'"):
        ingest_logs(tmp_path / "logs", tmp_path / "out", IngestConfig())
