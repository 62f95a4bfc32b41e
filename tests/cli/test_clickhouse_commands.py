"""`pytest-incident schema` and `pytest-incident load`: the DDL printed is what `load` runs
and what the source accepts (run in chDB, in both variants); a load reads back as the frozen
file it came from; every failure is one line and exit status 1, usage mistakes 2."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pytest_incident.cli.main import main
from pytest_incident.events.clickhouse import (
    _Session,
    connect,
    describe,
    parse_reference,
)
from pytest_incident.events.clickhouse_layout import schema_statements
from pytest_incident.events.window import read_window
from pytest_incident.model.spans import parse_timestamp
from pytest_incident.model.spec import Window

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "incidents" / "2024-05-signup.events.jsonl.gz"
WINDOW = Window(parse_timestamp("2024-05-14T14:00:00Z"), parse_timestamp("2024-05-14T14:30:00Z"))


def ordered(spans: object) -> list[object]:
    return sorted(spans, key=lambda s: (s.timestamp_ns, s.span_id))  # type: ignore[attr-defined]


def test_schema_prints_both_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-- map: attributes as Map(LowCardinality(String), String)")
    assert "\n-- json: attributes as JSON" in out
    assert out.count("CREATE TABLE IF NOT EXISTS `default`.`otel_traces` (") == 2
    assert "SpanAttributes Map(LowCardinality(String), String)," in out
    assert "SpanAttributes JSON," in out
    assert "CREATE MATERIALIZED VIEW IF NOT EXISTS `default`.`otel_traces_trace_id_ts_mv`" in out
    assert "PARTITION BY toDate(Timestamp)\nORDER BY (ServiceName, SpanName, toDateTime(" in out


def test_schema_json_lists_columns_and_statements(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--json", "--database", "otel", "--table", "spans"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["database"], found["table"], found["lookup_table"]) == (
        "otel",
        "spans",
        "spans_trace_id_ts",
    )
    columns = {c["name"]: c for c in found["variants"]["map"]["columns"]}
    assert columns["Duration"] == {"name": "Duration", "type": "UInt64", "read": True}
    assert columns["TraceState"]["read"] is False
    json_columns = {c["name"]: c["type"] for c in found["variants"]["json"]["columns"]}
    assert json_columns["Events.Attributes"] == "Array(JSON)"
    assert json_columns["SpanAttributesKeys"] == "Array(LowCardinality(String))"
    assert len(found["variants"]["json"]["statements"]) == 3


def test_schema_refuses_a_table_name_that_is_not_a_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["schema", "--table", "t; DROP TABLE x"])
    assert caught.value.code == 2
    assert "--table 't; DROP TABLE x': letters, digits and _ only" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["map", "json"])
def test_the_printed_ddl_makes_a_table_the_source_reads(
    tmp_path: Path, variant: str, chdb_dir: Path
) -> None:
    ref = parse_reference(f"chdb://{chdb_dir}?database=ddl_{variant}", tmp_path, {})
    client = connect(ref, create=True)
    try:
        client.command(f"CREATE DATABASE ddl_{variant}")
        for statement in schema_statements(f"ddl_{variant}", "otel_traces", variant):
            client.command(statement)
        assert describe(_Session(ref, client)).variant == variant
    finally:
        client.close()


@pytest.mark.parametrize("variant", ["map", "json"])
def test_load_then_read_gives_the_frozen_files_spans(
    tmp_path: Path, variant: str, capsys: pytest.CaptureFixture[str], chdb_dir: Path
) -> None:
    source = f"chdb://{chdb_dir}?table=spans&database=load_{variant}"
    assert main(["load", str(DEMO), "--source", source, "--variant", variant, "--batch", "7"]) == 0
    out = capsys.readouterr().out
    assert out == (
        f"loaded 61 spans from {DEMO} into chdb://{chdb_dir}?table=spans "
        f"(table created; {variant} attributes)\n"
    )
    read = ordered(read_window(source, tmp_path, WINDOW))
    assert read == ordered(read_window(str(DEMO), tmp_path, WINDOW))
    # loading again appends to the table that is there, in its own layout
    assert main(["load", str(DEMO), "--source", source, "--variant", "map"]) == 0
    assert f"(table existed; {variant} attributes)" in capsys.readouterr().out


def test_load_failures_are_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], chdb_dir: Path
) -> None:
    source = f"chdb://{chdb_dir}"
    assert main(["load", str(tmp_path / "none.jsonl.gz"), "--source", source]) == 3
    assert capsys.readouterr().err == (
        f"pytest-incident load: {tmp_path / 'none.jsonl.gz'}: file not found: "
        f"{tmp_path / 'none.jsonl.gz'}\n"
    )
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"format": "pytest-incident-spans", "version": 1}\n[1]\n'))
    assert main(["load", str(broken), "--source", source]) == 3
    assert capsys.readouterr().err == (
        f"pytest-incident load: {broken}:2: a row must be a JSON object, got an array\n"
    )
    assert main(["load", str(DEMO), "--source", "clickhouse://u:pw@127.0.0.1:1/db"]) == 3
    err = capsys.readouterr().err
    assert "a password written in the URL shows in the process list" in err
    assert ":pw@" not in err


def test_load_usage_mistakes_are_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["load", str(DEMO)],
        ["load", str(DEMO), "--source", "postgres://x"],
        ["load", str(DEMO), "--source", "chdb:///tmp/x", "--batch", "0"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    assert "expected chdb:///DIR or clickhouse://" in capsys.readouterr().err
