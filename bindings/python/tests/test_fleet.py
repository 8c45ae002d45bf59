"""DeviceFleet: provisioning, ingestion, readings queries and the alert life cycle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

import civicbus
from conftest import node_config

FLOW_METER = {
    "name": "py_flow_meter",
    "description": "Water main flow meter",
    "metrics": [{"name": "flow_rate", "unit": "L/min", "min": 0, "max": 1000},
                {"name": "pressure", "unit": "kPa"}],
    "expected_interval_s": 60,
}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[civicbus.DeviceFleet]:
    config = node_config(fleet={"certificates": {"enabled": False},
                                "reading_events": {"mode": "off"}})
    with civicbus.Node(config, data_dir=str(tmp_path / "d")) as node:
        assert node.fleet is not None
        yield node.fleet


def now_ms() -> int:
    return int(time.time() * 1000)


def test_ingest_raises_an_alert_that_is_acknowledged_and_resolved(
        fleet: civicbus.DeviceFleet) -> None:
    fleet.register_type(FLOW_METER)
    assert "py_flow_meter" in [t["name"] for t in fleet.device_types()]
    device = fleet.provision({"id": "fm-001", "serial": "SN-001", "type": "py_flow_meter",
                              "department": "water",
                              "location": {"lat": 45.42, "lon": -75.69}}, actor="ops@city")
    assert device["id"] == "fm-001" and device["status"] == "provisioned"
    assert device["topics"] and "certificate_pem" not in device
    rule = fleet.add_rule({"name": "high flow", "scope": {"type": "py_flow_meter"},
                           "kind": "threshold", "metric": "flow_rate", "direction": "above",
                           "warning": 500, "critical": 800, "clear": 400})
    t0 = now_ms() - 60_000
    result = fleet.ingest([
        civicbus.Reading("fm-001", "flow_rate", 120.0, t0),
        {"device_id": "fm-001", "metric": "flow_rate", "value": 640.0, "time": t0 + 10_000},
        ("fm-001", "pressure", 410.0, t0 + 10_000),
        ("fm-404", "flow_rate", 1.0, t0),                   # unknown device
        ("fm-001", "flow_rate", 5000.0, t0 + 20_000),       # out of range
        ("fm-001", "flow_rate", 1.0, t0, "m3/h"),           # unit mismatch
    ])
    assert result.accepted == 3
    assert sorted(r.reason for r in result.rejected) == ["out_of_range", "unit_mismatch",
                                                         "unknown_device"]
    assert all(r.message for r in result.rejected)

    [alert] = fleet.alerts(active_only=True, device_id="fm-001")
    assert alert.rule_id == rule["id"]
    assert (alert.severity, alert.state, alert.value) == ("warning", "raised", 640.0)
    acknowledged = fleet.acknowledge(alert.id, "dispatcher", "crew sent")
    assert acknowledged.state == "acknowledged"
    assert (acknowledged.acknowledged_by, acknowledged.acknowledge_note) == ("dispatcher",
                                                                             "crew sent")
    resolved = fleet.resolve(alert.id, "crew-7", "valve closed")
    assert resolved.state == "resolved" and resolved.resolved_by == "crew-7"
    assert fleet.alerts(active_only=True) == []
    assert fleet.alert(alert.id).to_dict()["state"] == "resolved"
    with pytest.raises(civicbus.NotFound):
        fleet.alert("no-such-alert")

    series = fleet.readings("fm-001", "flow_rate", t0 - 1000, now_ms(), agg="raw")
    assert series.tier == "raw"
    assert [p.last for p in series.points] == [120.0, 640.0]
    latest = {r.metric: r.value for r in fleet.latest("fm-001")}
    assert latest == {"flow_rate": 640.0, "pressure": 410.0}
    stats = fleet.stats()
    assert stats.devices == 1 and stats.readings_accepted == 3 and stats.readings_rejected == 3


def test_registry_queries_groups_and_import(fleet: civicbus.DeviceFleet) -> None:
    fleet.register_type(FLOW_METER)
    report = fleet.import_devices(
        "id,serial,type,department\n"
        "fm-1,S1,py_flow_meter,water\n"
        "fm-2,S2,py_flow_meter,parks\n"
        "fm-3,S3,no_such_type,water\n",
        format="csv")
    assert (report["provisioned"], report["failed"]) == (2, 1)
    assert report["errors"][0]["where"] == "line 4"
    page = fleet.devices({"department": "water"})
    assert page["total"] == 1 and page["devices"][0]["id"] == "fm-1"
    assert fleet.device("fm-9") is None
    group = fleet.create_group({"name": "North meters", "members": ["fm-1", "fm-2"]})
    assert group["id"] == "north-meters"
    assert fleet.group_members("north-meters") == ["fm-1", "fm-2"]
    updated = fleet.set_status("fm-2", "active", reason="installed")
    assert updated is not None and updated["status"] == "active"
    assert [c["to"] for c in fleet.history("fm-2")] == ["active"]
    with pytest.raises(civicbus.InvalidArgument):
        fleet.set_status("fm-2", "exploded")
    delta = fleet.push_config("fm-1", {"report_every_s": 30})
    assert delta == {"report_every_s": 30}
    assert fleet.twin("fm-1")["desired"] == {"report_every_s": 30}
    assert fleet.report_config("fm-1", {"report_every_s": 30}) == {}


def test_device_json_bodies(fleet: civicbus.DeviceFleet) -> None:
    fleet.register_type(FLOW_METER)
    fleet.provision({"id": "fm-1", "serial": "S1", "type": "py_flow_meter"})
    result = fleet.ingest_device_json("fm-1", {"time": now_ms(), "flow_rate": 12.5})
    assert result.accepted == 1, [r.message for r in result.rejected]
