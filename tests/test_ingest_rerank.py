"""Re-ranking requests at ingestion: every bad request quarantined with its reason (one unit
test per check on `validate_rerank_lists`, no Ray), good ones written unchanged in the contract
schema where `load_requests` reads them, counts per table that add up."""

from __future__ import annotations

import json
import math
import re

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
from pipeline.logs.schema import META_VERSION, read_contract, rerank_lists_schema
from pipeline.logs.validate_rerank import validate_rerank_lists
from pipeline.rerank.requests import load_requests

SPEC = factory.SPEC
K = 17
PREFIX = "rerank_lists: "


def loose(schema: pa.Schema) -> pa.Schema:
    """The contract schema with every column nullable (to write nulls into required ones)."""
    return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)


def spoiled(table: pa.Table, changes: dict) -> pa.Table:
    """`table` with `changes[row](row_dict) -> reason` applied; keeps the column types."""
    rows = table.to_pylist()
    for i, change in changes.items():
        change(rows[i])
    return pa.Table.from_pylist(rows, schema=loose(table.schema))


def _few_candidates(r):
    for column in ("candidate_item_ids", "candidate_features", "candidate_prices"):
        r[column] = r[column][:16]
    first = next(i for i in r["shown_order"] if i >= 16)
    return f"16 candidates, fewer than k=17; shown_order index {first} not in [0, 16)"


def _set(column, value, reason, at=None):
    """A change setting `column` (or its element `at`, or a feature `at=(row, value)`)."""

    def change(r):
        if at is None:
            r[column] = value
        elif isinstance(at, tuple):
            r[column][at[0]][at[1]] = value
        else:
            r[column][at] = value
        return reason

    return change


def _duplicate_item(r):
    r["candidate_item_ids"][5] = r["candidate_item_ids"][3]
    return f"duplicated item id {r['candidate_item_ids'][3]} in candidate_item_ids"


def _shown_twice(r):
    r["shown_order"][5] = r["shown_order"][1]
    return f"candidate {r['shown_order'][1]} shown twice"


def _short_order(r):
    for column in ("shown_order", "click_labels", "pay_labels"):
        r[column].pop()
    return "shown_order has 16 positions, not k=17"


def _append(column, value, reason):
    def change(r):
        r[column].append(value)
        return reason

    return change


def _pop(column, reason):
    def change(r):
        r[column].pop()
        return reason

    return change


# name -> change of a 20-candidate request returning its full expected reason
CASES = {
    "null required column": _set("user_id", None, "null user_id"),
    "null candidate list": _set("candidate_item_ids", None, "null candidate_item_ids"),
    "fewer than k candidates": _few_candidates,
    "duplicated item id": _duplicate_item,
    "null item id": _set("candidate_item_ids", None, "null inside candidate_item_ids", at=0),
    "features length": _pop(
        "candidate_features", "candidate_features has 19 entries for 20 candidates"
    ),
    "prices length": _append(
        "candidate_prices", 5.0, "candidate_prices has 21 entries for 20 candidates"
    ),
    "null price": _set("candidate_prices", None, "null candidate price", at=4),
    "NaN price": _set("candidate_prices", math.nan, "non-finite candidate price (NaN or inf)", 4),
    "inf price": _set("candidate_prices", math.inf, "non-finite candidate price (NaN or inf)", 4),
    "zero price": _set("candidate_prices", 0.0, "non-positive candidate price 0", at=4),
    "negative price": _set("candidate_prices", -2.5, "non-positive candidate price -2.5", at=4),
    "NaN feature": _set(
        "candidate_features", math.nan, "non-finite candidate_features (NaN or inf)", at=(3, 2)
    ),
    "inf feature": _set(
        "candidate_features", -math.inf, "non-finite candidate_features (NaN or inf)", at=(3, 0)
    ),
    "null feature row": _set(
        "candidate_features", None, "null feature row or value in candidate_features", at=3
    ),
    "null feature value": _set(
        "candidate_features", None, "null feature row or value in candidate_features", at=(3, 1)
    ),
    "shown_order length": _short_order,
    "shown index too large": _set("shown_order", 20, "shown_order index 20 not in [0, 20)", at=4),
    "shown index negative": _set("shown_order", -1, "shown_order index -1 not in [0, 20)", at=4),
    "shown twice": _shown_twice,
    "click labels length": _append(
        "click_labels", 0, "click_labels has 18 labels for 17 shown positions"
    ),
    "pay labels length": _pop("pay_labels", "pay_labels has 16 labels for 17 shown positions"),
    "pay labels missing": _set("pay_labels", None, "pay_labels missing"),
    "click label not 0/1": _set("click_labels", 2, "click_labels value 2 not in {0, 1}", at=0),
    "pay label not 0/1": _set("pay_labels", -1, "pay_labels value -1 not in {0, 1}", at=16),
    "null click label": _set("click_labels", None, "null inside click_labels", at=3),
    "customer attribute range": _set(
        "customer_attrs", 99, "customer_attrs[0] (history_turnover_level) = 99 not in [0, 8)", at=0
    ),
    "query category range": _set("query_category", 12, "query_category 12 not in [0, 12)"),
    "unknown scenario": _set("scenario", "homepage", "unknown scenario 'homepage'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_check_quarantines_the_bad_request_only(case):
    base = factory.rerank_lists(6, n=(20, 17, 20), seed=1)
    reasons = {}
    table = spoiled(base, {3: lambda r: reasons.setdefault(3, CASES[case](r))})
    checked = validate_rerank_lists(table, SPEC, K)
    assert checked.bad_index.tolist() == [3]
    assert checked.bad_reasons == [reasons[3]]
    assert checked.good_index.tolist() == [0, 1, 2, 4, 5]
    assert checked.good.equals(base.take([0, 1, 2, 4, 5]), check_metadata=True)


def test_several_problems_are_joined_and_a_pay_without_click_is_fine():
    base = factory.rerank_lists(3, seed=2)
    rows = base.to_pylist()
    rows[0]["candidate_prices"][0] = -1.0
    rows[0]["shown_order"][0] = 30
    rows[1]["click_labels"] = [0] * K
    rows[1]["pay_labels"] = [1] + [0] * (K - 1)  # paid, not clicked: the world allows it
    checked = validate_rerank_lists(pa.Table.from_pylist(rows, schema=base.schema), SPEC, K)
    assert checked.bad_index.tolist() == [0]
    assert checked.bad_reasons == [
        "non-positive candidate price -1; shown_order index 30 not in [0, 20)"
    ]
    assert checked.good.column("pay_labels")[0].as_py()[0] == 1


def test_missing_and_mistyped_columns():
    base = factory.rerank_lists(4, seed=3)
    checked = validate_rerank_lists(base.drop_columns(["candidate_prices"]), SPEC, K)
    assert checked.good.num_rows == 0
    assert checked.bad_reasons == ["missing column 'candidate_prices'"] * 4

    users = [str(u) for u in base.column("user_id").to_pylist()]
    users[2] = "x"
    index = base.schema.get_field_index("user_id")
    checked = validate_rerank_lists(base.set_column(index, "user_id", pa.array(users)), SPEC, K)
    assert checked.bad_index.tolist() == [2]
    assert checked.bad_reasons == ["column 'user_id': value is not int64 (string)"]
    # Castable values of a mistyped column are kept, cast to the contract type.
    assert checked.good.equals(base.take([0, 1, 3]), check_metadata=True)

    wide = base.set_column(
        base.schema.get_field_index("shown_order"),
        "shown_order",
        base.column("shown_order").cast(pa.list_(pa.int64())),
    )
    assert validate_rerank_lists(wide, SPEC, K).good.equals(base)


def test_k_is_a_setting():
    table = factory.rerank_lists(2, n=10, k=5, seed=4)
    assert validate_rerank_lists(table, SPEC, 5).good.num_rows == 2
    reasons = validate_rerank_lists(table, SPEC, 17).bad_reasons
    assert reasons[0].startswith("10 candidates, fewer than k=17; shown_order has 5 positions")
    with pytest.raises(ValueError):
        IngestConfig(rerank_k=0)


# ---- ingestion on Ray ------------------------------------------------------------------------


def quarantine(out) -> list[dict]:
    return pads.dataset(out / "quarantine").to_table().to_pylist()


def rerank_logs(root):
    """Page views (all good) and three rerank_lists files. Returns ({(file, row): reason} of the
    requests that must be quarantined, the input rows that must be kept, rows written)."""
    factory.write(factory.page_views(20, pages=2, seed=10), root)
    base = factory.rerank_lists(3 * (len(CASES) - 1), n=(20, 17, 30), seed=11)
    # A 20-candidate request (rows 0, 3, 6, ...) spoiled per case, spread over the row groups.
    # Not a null feature row: pyarrow writes it but cannot read it back (apache/arrow#35692), so
    # its whole row group would be quarantined as unreadable; the unit test covers the check.
    cases = [case for case in CASES if case != "null feature row"]
    changes, expected = {}, {}
    for j, case in enumerate(cases):
        changes[3 * j] = lambda r, case=case, row=3 * j: expected.setdefault(row, CASES[case](r))
    table = spoiled(base, changes)
    main = factory.write_rerank(table, root, row_group_size=20)
    bad = {(str(main), row): reason for row, reason in expected.items()}
    keep = base.filter(pc.invert(pa.array(np.isin(np.arange(base.num_rows), list(expected)))))

    other = factory.rerank_lists(5, seed=12, first_request=1000)
    missing = factory.write_rerank(
        other.drop_columns(["pay_labels"]), root, name="part-missing.parquet"
    )
    bad.update({(str(missing), r): "missing column 'pay_labels'" for r in range(5)})

    typed = factory.rerank_lists(4, n=25, seed=13, first_request=2000)
    users = [str(u) for u in typed.column("user_id").to_pylist()]
    users[1] = "anonymous"
    index = typed.schema.get_field_index("user_id")
    text = factory.write_rerank(
        typed.set_column(index, "user_id", pa.array(users)), root, name="part-text.parquet"
    )
    bad[(str(text), 1)] = "column 'user_id': value is not int64 (string)"
    keep = pa.concat_tables([keep, typed.take([0, 2, 3])])
    return bad, keep, base.num_rows + 5 + 4


@pytest.mark.usefixtures("ray_session")
def test_rerank_lists_are_validated_quarantined_and_written(tmp_path):
    bad, keep, total = rerank_logs(tmp_path / "logs")
    out = tmp_path / "out"
    summary = ingest_logs(tmp_path / "logs", out, IngestConfig(shards=2))

    # Page-view counts are untouched by the requests; the requests have their own.
    assert summary.rows_read == summary.rows_accepted == 40 and summary.rows_quarantined == 0
    assert summary.rerank_rows_read == total and summary.rerank_files_read == 3
    assert summary.rerank_rows_quarantined == len(bad)
    assert summary.rerank_rows_accepted == keep.num_rows == total - len(bad)
    saved = json.loads((out / "ingest_summary.json").read_text())
    assert saved["rerank_rows_accepted"] == keep.num_rows

    entries = quarantine(out)
    found = {(q["source_file"], q["row"]): q for q in entries}
    assert set(found) == set(bad)
    source = pq.read_table(tmp_path / "logs/rerank_lists/date=2026-01-01/part-00000.parquet")
    for key, reason in bad.items():
        assert found[key]["reason"] == PREFIX + reason, key
        row = json.loads(found[key]["row_json"])  # the request itself, NaN included
        if "part-00000" in key[0]:
            assert row["request_id"] == source.column("request_id")[key[1]].as_py()
    kinds = summary.quarantine_reasons
    assert kinds["rerank_lists: duplicated item id # in candidate_item_ids"] == 1
    assert kinds["rerank_lists: missing column #"] == 5

    # Good requests: every one, values unchanged, contract schema and metadata, one file per
    # row group.
    names = sorted(p.name for p in (out / "rerank_lists").iterdir())
    assert names == [f"part-f00000-g{g:05d}.parquet" for g in range(5)] + [
        "part-f00001-g00000.parquet",
        "part-f00002-g00000.parquet",
    ]
    schema = pq.read_schema(out / "rerank_lists" / names[0])
    assert read_contract(schema, names[0]) == ("rerank_lists", SPEC)
    assert schema.equals(rerank_lists_schema(SPEC))
    written = pq.read_table(out / "rerank_lists").sort_by("request_id")
    assert written.to_pylist() == keep.sort_by("request_id").to_pylist()

    requests, spec = load_requests(out, k=K)
    assert spec == SPEC and len(requests) == keep.num_rows
    expected = keep.sort_by("request_id").to_pylist()
    for i in (0, 1, 2, len(expected) - 1):
        row = expected[i]
        n = len(row["candidate_item_ids"])
        assert requests.request_id[i] == row["request_id"]
        assert requests.sizes[i] == n
        assert requests.shown[i].tolist() == row["shown_order"]
        assert requests.clicks[i].tolist() == row["click_labels"]
        assert requests.pays[i].tolist() == row["pay_labels"]
        assert np.array_equal(requests.prices[i, :n], np.float32(row["candidate_prices"]))
        assert np.array_equal(requests.features[i, :n], np.float32(row["candidate_features"]))
        assert requests.query[i] == row["query_category"]


@pytest.mark.usefixtures("ray_session")
def test_logs_without_rerank_lists_ingest_as_before_and_the_cli_prints_counts(tmp_path, cli):
    factory.write(factory.page_views(10, seed=20), tmp_path / "plain")
    summary = ingest_logs(tmp_path / "plain", tmp_path / "plain_out")
    assert summary.rows_accepted == summary.rows_read == 30 and summary.quarantine_reasons == {}
    assert summary.rerank_rows_read == summary.rerank_rows_accepted == 0
    assert summary.rerank_rows_quarantined == summary.rerank_files_read == 0
    assert not (tmp_path / "plain_out/rerank_lists").exists()

    factory.write(factory.page_views(10, seed=21), tmp_path / "logs")
    factory.write_rerank(factory.rerank_lists(7, seed=22), tmp_path / "logs")
    code, out, _ = cli(
        "logs", "ingest", tmp_path / "logs", "--out", tmp_path / "out", "--no-progress"
    )
    assert code == 0
    printed = dict(re.findall(r"(rerank_\w+)\s*│\s*(\d+)", out))
    assert printed["rerank_rows_read"] == printed["rerank_rows_accepted"] == "7"
    assert printed["rerank_rows_quarantined"] == "0"


@pytest.mark.usefixtures("ray_session")
def test_bad_rerank_files_stop_the_run_or_go_to_quarantine(tmp_path):
    logs = tmp_path / "logs"
    factory.write(factory.page_views(5, seed=30), logs)
    good = factory.write_rerank(factory.rerank_lists(6, seed=31), logs)
    truncated = good.with_name("part-truncated.parquet")
    truncated.write_bytes(good.read_bytes()[:300])
    t = factory.rerank_lists(2, seed=32, first_request=100)
    old = factory.write_rerank(
        t.replace_schema_metadata({**t.schema.metadata, META_VERSION: b"0"}),
        logs,
        name="part-old.parquet",
    )

    with pytest.raises(UserError, match=str(old)):
        ingest_logs(logs, tmp_path / "strict", IngestConfig())
    assert not (tmp_path / "strict").exists()

    summary = ingest_logs(
        logs, tmp_path / "lenient", IngestConfig(on_bad_file=OnBadFile.QUARANTINE)
    )
    assert summary.files_quarantined == 0 and summary.rows_quarantined == 0
    assert summary.rerank_files_quarantined == 2 and summary.rerank_files_read == 1
    assert summary.rerank_rows_read == summary.rerank_rows_accepted == 6
    entries = {q["source_file"]: q for q in quarantine(tmp_path / "lenient")}
    assert set(entries) == {str(truncated), str(old)}
    assert all(q["row"] == -1 and q["reason"].startswith(PREFIX) for q in entries.values())
    assert "not a readable parquet file" in entries[str(truncated)]["reason"]
    assert "schema version '0'" in entries[str(old)]["reason"]

    # No readable rerank file at all: the page views still go through.
    good.unlink()
    summary = ingest_logs(logs, tmp_path / "none", IngestConfig(on_bad_file=OnBadFile.QUARANTINE))
    assert summary.rows_accepted == 15 and summary.rerank_files_quarantined == 2
    assert summary.rerank_rows_read == 0 and not (tmp_path / "none/rerank_lists").exists()
