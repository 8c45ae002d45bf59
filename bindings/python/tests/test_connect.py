"""Python connectors registered with a connector hub on a node."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

import civicbus
from conftest import node_config

STORE: list[dict[str, Any]] = []


class Assessments(civicbus.Connector):
    """A source of property assessments with a request/response operation."""

    name = "py-assessments"
    config_schema = {"type": "object", "required": ["year"],
                     "properties": {"year": {"type": "integer"},
                                    "token": {"type": "string", "secret": True}}}

    def check(self, context: civicbus.ConnectorContext) -> None:
        if context.config.get("token") != "s3cret":
            raise civicbus.Unauthenticated("the assessment service refused the token")

    def discover(self, context: civicbus.ConnectorContext) -> list[dict[str, Any]]:
        return [{"name": "assessments", "fields": [{"name": "roll", "type": "string"},
                                                   {"name": "value", "type": "integer"}]}]

    def read(self, context: civicbus.ConnectorContext, request: civicbus.ReadRequest,
             emitter: civicbus.RecordEmitter) -> None:
        year = context.config["year"]
        emitter.emit("assessments", [{"roll": f"{year}-{n}", "value": 100000 + n}
                                     for n in range(5)])
        emitter.checkpoint("assessments", {"year": year})

    def operations(self) -> list[str]:
        return ["lookup"]

    def call(self, context: civicbus.ConnectorContext, operation: str, input: Any) -> Any:
        return {"roll": input["roll"], "value": 412000}


class Warehouse(civicbus.Connector):
    name = "py-warehouse"
    is_source = False
    is_sink = True

    def write(self, context: civicbus.ConnectorContext, request: civicbus.WriteRequest,
              records: list[dict[str, Any]]) -> int:
        STORE.extend(records)
        return len(records)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[civicbus.ConnectorHub]:
    catalog = civicbus.ConnectorCatalog(builtin=False)
    catalog.add(Assessments)
    catalog.add(Warehouse)
    assert catalog.names() == ["py-assessments", "py-warehouse"]
    config = node_config(security={"master_key": "generate"})
    with civicbus.Node(config, data_dir=str(tmp_path / "d")) as node:
        with civicbus.ConnectorHub(node, catalog=catalog) as h:
            yield h


def test_a_sync_reads_a_python_source_into_a_python_sink(hub: civicbus.ConnectorHub) -> None:
    STORE.clear()
    hub.add({"name": "warehouse", "connector": "py-warehouse"})
    hub.add({"name": "assessments-2026", "connector": "py-assessments",
             "config": {"year": 2026, "token": "s3cret"}, "destination": "warehouse"})
    assert sorted(hub.names()) == ["assessments-2026", "warehouse"]
    hub.check("assessments-2026")
    report = hub.sync("assessments-2026")
    assert (report.records_read, report.records_written) == (5, 5)
    assert report.state == {"assessments": {"year": 2026}}
    assert [r["roll"] for r in STORE] == [f"2026-{n}" for n in range(5)]
    status = hub.status("assessments-2026")
    assert status["health"] == "healthy" and status["last_error"] == ""
    # The secret went to the vault: it is never shown again.
    assert status["config"]["token"] == "********"
    assert hub.options("assessments-2026")["config"]["year"] == 2026
    answer = hub.call("assessments-2026", "lookup", {"roll": "0101"})
    assert answer["source"] == "live" and answer["response"] == {"roll": "0101", "value": 412000}


def test_connector_errors_keep_their_code(hub: civicbus.ConnectorHub) -> None:
    hub.add({"name": "bad-token", "connector": "py-assessments",
             "config": {"year": 2026, "token": "wrong"}})
    with pytest.raises(civicbus.Unauthenticated, match="refused the token"):
        hub.check("bad-token")
    with pytest.raises(civicbus.InvalidArgument, match="year"):
        hub.add({"name": "no-year", "connector": "py-assessments", "config": {}})
    with pytest.raises(civicbus.NotFound):
        hub.sync("nothing-here")


def test_catalog_refuses_duplicates_and_bad_schemas() -> None:
    catalog = civicbus.ConnectorCatalog(builtin=False)
    catalog.add(Assessments)
    with pytest.raises(civicbus.AlreadyExists):
        catalog.add(Assessments)

    class BadSchema(civicbus.Connector):
        name = "bad"
        config_schema = {"type": 12}

    with pytest.raises(civicbus.InvalidArgument, match="invalid config schema"):
        catalog.add(BadSchema)
    specs = {s["name"]: s for s in civicbus.ConnectorCatalog().specs()}
    assert specs["sqlite"]["is_sink"]


def test_the_hub_needs_the_master_key(node: civicbus.Node) -> None:
    with pytest.raises(civicbus.FailedPrecondition, match="master key"):
        civicbus.ConnectorHub(node)
