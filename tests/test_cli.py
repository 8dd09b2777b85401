"""The command line: help texts, and one-line errors with a non-zero exit on bad input."""

from __future__ import annotations

import pytest

import factory
from pipeline.errors import UserError
from pipeline.logs.schema import META_VERSION


@pytest.mark.parametrize(
    "command",
    [[], ["logs"], ["logs", "generate"], ["logs", "ingest"], ["logs", "inspect"], ["run"]],
)
def test_help_explains_every_command(cli, command):
    code, out, _ = cli(*command, "--help")
    assert code == 0 and "Usage: ecomrl" in out and len(out.splitlines()) > 5


def bad_inputs(tmp_path) -> dict[str, tuple]:
    """name -> (path, words the error must contain)."""
    text = tmp_path / "notes.parquet"
    text.write_text("session_id,user_id\n1,2\n")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    zero = factory.write(factory.page_views(1).slice(0, 0), tmp_path / "zero")
    t = factory.page_views(2)
    old = factory.write(
        t.replace_schema_metadata({**t.schema.metadata, META_VERSION: b"7"}), tmp_path / "old"
    )
    return {
        "missing path": (tmp_path / "nope", [str(tmp_path / "nope"), "no such file"]),
        "not parquet": (text, [str(text), "not a readable parquet file"]),
        "wrong schema version": (old.parents[2], [str(old), "schema version '7'"]),
        "empty dataset": (empty_dir, [str(empty_dir), "empty dataset"]),
        "zero rows": (zero.parents[2], ["empty dataset"]),
    }


@pytest.mark.parametrize(
    "case", ["missing path", "not parquet", "wrong schema version", "empty dataset", "zero rows"]
)
@pytest.mark.parametrize("command", ["inspect", "ingest"])
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, case, command):
    path, words = bad_inputs(tmp_path)[case]
    args = ["logs", command, path] + (["--out", tmp_path / "out"] if command == "ingest" else [])
    code, out, err = cli(*args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert err.startswith("ecomrl: error: ")
    for word in words:
        assert word in err
    assert not (tmp_path / "out").exists()  # nothing written before the input was checked


def test_debug_shows_the_traceback(cli, tmp_path):
    with pytest.raises(UserError):
        cli("--debug", "logs", "inspect", tmp_path / "nope")


def test_unknown_option_is_a_usage_error(cli):
    code, _, err = cli("logs", "ingest", "x", "--out", "y", "--shards", "0")
    assert code == 2 and "shards" in err


def test_inspect_prints_partitions_and_statistics(cli, tmp_path):
    factory.write(factory.page_views(5, pages=2), tmp_path / "logs")
    code, out, _ = cli("logs", "inspect", tmp_path / "logs", "--json")
    assert code == 0
    import json

    (report,) = json.loads(out)
    assert report["table"] == "page_views" and report["rows"] == 10
    assert report["partitions"] == {"date=2026-01-01": {"files": 1, "rows": 10}}
    assert report["columns"]["page_index"]["max"] == 1
    assert report["columns"]["customer_action"]["top"]["turn_page"] == 5
