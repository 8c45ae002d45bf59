"""A Python connector feeding a pipeline with Python stages into a sink."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import civicbus

PERMITS: list[dict[str, Any]] = [
    {"id": 1, "status": "iss", "address": "1 main st", "fee": 12.5},
    {"id": 2, "status": "app", "address": "22 elm ave", "fee": 40},
    {"id": 3, "status": "iss", "address": "", "fee": 7},
    {"id": 4, "status": "fin", "address": "5 rue principale", "fee": 0},
]


class PermitSource(civicbus.Connector):
    """Reads the permits of an old permitting system (here: a list) in batches of two."""

    name = "py-permits"
    title = "Permits from Python"
    config_schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    threads: set[int] = set()

    def discover(self, context: civicbus.ConnectorContext) -> list[dict[str, Any]]:
        return [{"name": "permits", "fields": {"id": "integer", "status": "string",
                                               "address": "string", "fee": "number"},
                 "primary_key": ["id"], "cursor_field": "id"}]

    def read(self, context: civicbus.ConnectorContext, request: civicbus.ReadRequest,
             emitter: civicbus.RecordEmitter) -> None:
        PermitSource.threads.add(threading.get_ident())
        assert context.config.get("city") == "Lac-Clair"
        after = (request.stream_state("permits") or {}).get("cursor", 0)
        rows = [p for p in PERMITS if p["id"] > after]
        for start in range(0, len(rows), 2):
            batch = rows[start:start + 2]
            emitter.emit("permits", batch, positions=[p["id"] for p in batch])
            emitter.checkpoint("permits", {"cursor": batch[-1]["id"]})


class UpperStatus(civicbus.Stage):
    """Upper-cases a field given in the stage's config."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.field = config["field"]
        self.name = "upper"

    def process(self, batch: civicbus.StageBatch) -> None:
        for record in batch.records:
            record[self.field] = str(record[self.field]).upper()


class RequireAddress(civicbus.Stage):
    name = "require address"

    def __init__(self) -> None:
        self.seen = 0

    def process(self, batch: civicbus.StageBatch) -> None:
        self.seen += len(batch)
        for record in list(batch.records):
            if not record["address"]:
                batch.reject(record, "a permit needs an address", field="address")
            else:
                record["checked"] = True


def catalog() -> civicbus.ConnectorCatalog:
    c = civicbus.ConnectorCatalog()
    c.add(PermitSource)
    assert "py-permits" in c and "sqlite" in c
    return c


def test_python_source_and_stages_load_a_sqlite_sink(tmp_path: Path) -> None:
    db = tmp_path / "permits.db"
    options = {
        "name": "permits",
        "source": {"connector": "py-permits", "config": {"city": "Lac-Clair"},
                   "stream": "permits"},
        "stages": [{"type": "upper", "field": "status"}],
        "sink": {"connector": "sqlite", "config": {"path": str(db)}, "stream": "permits"},
        "batch_size": 2,
        "error_report_dir": str(tmp_path / "report"),
    }
    progress: list[int] = []
    required = RequireAddress()
    pipeline = civicbus.Pipeline(options, catalog=catalog(), stage_types={"upper": UpperStatus},
                                 on_progress=lambda p: progress.append(p.rows_loaded))
    pipeline.add_stage(required)
    assert pipeline.name == "permits"
    report = pipeline.run()
    assert (report.rows_read, report.rows_loaded, report.rows_failed) == (4, 3, 1)
    assert report.success_rate() == pytest.approx(0.75)
    [error] = report.errors
    assert (error.stage, error.position, error.field) == ("require address", 3, "address")
    assert error.reason == "a permit needs an address"
    assert Path(report.error_csv_path).exists()
    assert progress and progress[-1] == 3
    assert required.seen == 4
    # The source ran on the pipeline's reader thread, not on the one that called run().
    assert threading.get_ident() not in PermitSource.threads
    rows = sqlite3.connect(db).execute(
        "SELECT id, status, checked FROM permits ORDER BY id").fetchall()
    assert rows == [(1, "ISS", 1), (2, "APP", 1), (4, "FIN", 1)]


class CollectingSink(civicbus.Connector):
    name = "py-sink"
    is_source = False
    is_sink = True
    written: list[dict[str, Any]] = []

    def write(self, context: civicbus.ConnectorContext, request: civicbus.WriteRequest,
              records: list[dict[str, Any]]) -> civicbus.WriteResult:
        good = [r for r in records if r["fee"] > 0]
        CollectingSink.written.extend(good)
        return civicbus.WriteResult(len(good), [civicbus.RowError(0, "free permits are not "
                                                                   "billed", field="fee")
                                                for r in records if r["fee"] <= 0])


def test_a_python_sink_refusing_records(tmp_path: Path) -> None:
    c = catalog()
    c.add(CollectingSink)
    options = {
        "name": "billing",
        "source": {"connector": "py-permits", "config": {"city": "Lac-Clair"}},
        "sink": {"connector": "py-sink", "stream": "bills"},
        "error_report_dir": str(tmp_path / "report"),
    }
    report = civicbus.Pipeline(options, catalog=c).run()
    assert (report.rows_loaded, report.rows_failed) == (3, 1)
    assert [r["id"] for r in CollectingSink.written] == [1, 2, 3]
    assert report.errors[0].reason == "free permits are not billed"


def test_a_failing_stage_fails_the_run(tmp_path: Path) -> None:
    class Broken(civicbus.Stage):
        name = "broken"

        def process(self, batch: civicbus.StageBatch) -> None:
            raise KeyError("lookup table missing")

    options = {
        "name": "broken",
        "source": {"connector": "py-permits", "config": {"city": "Lac-Clair"}},
        "sink": {"connector": "sqlite", "config": {"path": str(tmp_path / "x.db")},
                 "stream": "permits"},
        "error_report_dir": str(tmp_path / "report"),
    }
    pipeline = civicbus.Pipeline(options, catalog=catalog())
    pipeline.add_stage(Broken())
    with pytest.raises(civicbus.Internal) as caught:
        pipeline.run()
    assert "stage 'broken' raised KeyError" in caught.value.message


def test_unknown_connectors_and_stage_types_are_named(tmp_path: Path) -> None:
    options: dict[str, Any] = {
        "name": "x", "source": {"connector": "nope"},
        "sink": {"connector": "sqlite", "config": {"path": str(tmp_path / "x.db")}},
    }
    with pytest.raises(civicbus.Error, match="nope"):
        civicbus.Pipeline(options)
    assert "map_codes" in civicbus.builtin_stage_types()
