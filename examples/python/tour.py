# %% [markdown]
# # A tour of civicbus from Python
#
# A notebook-style script (cells marked `# %%`, runnable in VS Code, Jupyter with jupytext, or
# as a plain script): one node with a gateway and a device fleet, events published and
# consumed by a Python handler, an HTTP route served by Python, two address lists linked by
# the match engine, a Python connector feeding a pipeline, and a water meter raising an alert.
#
# Run it with the module on the path, from a build tree:
#     PYTHONPATH=build/bindings/python python3 examples/python/tour.py
# ctest runs it as "example: python tour". It asserts what it shows, so a regression fails.

# %%
from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import civicbus

workdir = Path(tempfile.mkdtemp(prefix="civicbus-tour-"))
print(f"civicbus {civicbus.__version__}, working in {workdir}")

# %% [markdown]
# ## A node
# The configuration is node.yaml's, as a dict: a topic, a gateway on a free loopback port and
# a device fleet (without device certificates, so no master key is needed).

# %%
config: dict[str, Any] = {
    "node": {"name": "tour", "worker_threads": 2},
    "logging": {"level": "error"},
    "security": {"master_key_env": "CIVICBUS_TOUR_NO_KEY"},
    "topics": [{"name": "permit.issued", "owner": "permits-team", "retention": "30d",
                "description": "A building permit was issued"}],
    "gateway": {"listener": {"bind_address": "127.0.0.1", "port": 0}},
    "fleet": {"certificates": {"enabled": False}, "reading_events": {"mode": "off"}},
}
node = civicbus.Node(config, data_dir=str(workdir / "node"))
print(node, [t.name for t in node.broker.topics()])

# %% [markdown]
# ## Publish and subscribe
# The handler runs on the node's worker threads; raising would retry the event and, after
# `max_deliveries`, park it in the dead-letter queue.

# %%
received: list[civicbus.Event] = []
done = threading.Event()


def on_permit(event: civicbus.Event) -> None:
    received.append(event)
    if len(received) == 3:
        done.set()


subscription = node.broker.subscribe("gis-sync", "permit.*", on_permit, start_from="earliest")
for number, address in enumerate(["12 rue Principale", "7 Elm St", "100 Bank St"], start=1):
    ack = node.broker.publish("permit.issued", {"permit": number, "address": address},
                              subject=f"permit-{number}")
    print(f"published permit {number} at offset {ack.offset}")
assert done.wait(15), "the subscriber did not get the three permits"
subscription.stop()
print("received:", [e.data["address"] for e in received])

# %% [markdown]
# ## An HTTP route served by Python
# The node's gateway is already listening; the handler answers JSON from the events above.

# %%
gateway = node.gateway
assert gateway is not None


def permit_route(request: civicbus.Request) -> dict[str, Any] | civicbus.Response:
    wanted = int(request.params["id"])
    for event in received:
        if event.data["permit"] == wanted:
            return {"permit": wanted, "address": event.data["address"]}
    raise civicbus.NotFound(f"no permit {wanted}")


gateway.add_route("/permits/{id}", permit_route, summary="A permit by number")
with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/permits/2", timeout=10) as reply:
    answer = json.loads(reply.read())
print("GET /permits/2 ->", answer)
assert answer == {"permit": 2, "address": "7 Elm St"}

# %% [markdown]
# ## Addresses and record linkage
# Canada Post normalisation, then two small lists of property owners linked by name, birth
# date and postal code. The weights are explained field by field.

# %%
canonical = civicbus.normalize_address("2701 23rd Avenue SW Unit 104, Regina, Sask. s4s1e5")
print(canonical.one_line(), canonical.corrections)

owners = civicbus.Dataset.from_records([
    {"id": "T1", "name": "Marie Tremblay", "dob": "1980-03-14", "postal": "H3L 1T8"},
    {"id": "T2", "name": "Jean Gagnon", "dob": "1975-07-02", "postal": "G1R 4P5"},
    {"id": "T3", "name": "Sophie Roy", "dob": "1990-11-23", "postal": "J4K 2B6"},
    {"id": "T4", "name": "Luc Côté", "dob": "1968-01-30", "postal": "H2X 1Y4"},
], source="tax")
roll = civicbus.Dataset.from_records([
    {"id": "R1", "name": "TREMBLAI, Marie", "dob": "19800314", "postal": "h3l1t8"},
    {"id": "R2", "name": "Gagnon Jean", "dob": "1975-07-02", "postal": "G1R 4P5"},
    {"id": "R3", "name": "Luc Cote", "dob": "1968-01-30", "postal": "H2X 1Y4"},
    {"id": "R4", "name": "Anh Nguyen", "dob": "1999-01-01", "postal": "H3L 1T8"},
], source="roll")
engine = civicbus.MatchEngine({
    "link_type": "link", "unique_id": "id",
    "comparisons": [{"field": "name", "kind": "name"}, {"field": "dob", "kind": "date"},
                    {"field": "postal", "kind": "postal_code"}],
    "blocking": [["postal"], ["year(dob)"]],
    "deterministic": [["dob", "postal"]],
})
result = engine.run(owners, roll)
links = sorted((engine.record_id(owners, p.left), engine.record_id(roll, p.right))
               for p in result.pairs if p.decision == "match")
print("linked:", links)
assert links == [("T1", "R1"), ("T2", "R2"), ("T4", "R3")]
first = next(p for p in result.pairs if p.decision == "match")
print(engine.explain(owners, roll, [(first.left, first.right)])[0].to_text())

# %% [markdown]
# ## A connector written in Python, through a pipeline
# The source reads from a list; a Python stage upper-cases the status; the built-in sqlite
# connector is the sink.

# %%
class LegacyPermits(civicbus.Connector):
    name = "legacy-permits"
    title = "Permits of the old system"

    def discover(self, context: civicbus.ConnectorContext) -> list[dict[str, Any]]:
        return [{"name": "permits", "fields": {"id": "integer", "status": "string"}}]

    def read(self, context: civicbus.ConnectorContext, request: civicbus.ReadRequest,
             emitter: civicbus.RecordEmitter) -> None:
        emitter.emit("permits", [{"id": 1, "status": "iss"}, {"id": 2, "status": "app"}])


class UpperStatus(civicbus.Stage):
    name = "upper status"

    def process(self, batch: civicbus.StageBatch) -> None:
        for record in batch.records:
            record["status"] = record["status"].upper()


catalog = civicbus.ConnectorCatalog()
catalog.add(LegacyPermits)
pipeline = civicbus.Pipeline({
    "name": "legacy-permits",
    "source": {"connector": "legacy-permits", "stream": "permits"},
    "sink": {"connector": "sqlite", "config": {"path": str(workdir / "permits.db")},
             "stream": "permits"},
    "error_report_dir": str(workdir / "report"),
}, catalog=catalog, node=node)
pipeline.add_stage(UpperStatus())
report = pipeline.run()
rows = sqlite3.connect(workdir / "permits.db").execute(
    "SELECT id, status FROM permits ORDER BY id").fetchall()
print(f"pipeline loaded {report.rows_loaded} rows:", rows)
assert rows == [(1, "ISS"), (2, "APP")]

# %% [markdown]
# ## A water meter raising an alert
# A device type is data; a threshold rule with hysteresis raises an alert that a dispatcher
# acknowledges and a crew resolves.

# %%
fleet = node.fleet
assert fleet is not None
fleet.register_type({"name": "tour_meter", "description": "Water meter",
                     "metrics": [{"name": "flow_rate", "unit": "L/min", "min": 0, "max": 500}],
                     "expected_interval_s": 60})
fleet.provision({"id": "wm-1", "serial": "WM-0001", "type": "tour_meter"}, actor="ops")
fleet.add_rule({"name": "night leak", "scope": {"type": "tour_meter"}, "kind": "threshold",
                "metric": "flow_rate", "direction": "above", "warning": 40, "critical": 80,
                "clear": 20})
now = int(time.time() * 1000)
ingested = fleet.ingest([("wm-1", "flow_rate", 12.0, now - 120_000),
                         ("wm-1", "flow_rate", 95.0, now - 60_000)])
[alert] = fleet.alerts(active_only=True)
print(f"ingested {ingested.accepted}; alert: {alert.severity} {alert.message}")
fleet.acknowledge(alert.id, "dispatcher", "crew sent")
resolved = fleet.resolve(alert.id, "crew-7", "valve closed")
assert resolved.state == "resolved"
series = fleet.readings("wm-1", "flow_rate", now - 600_000, now, agg="raw")
print("readings:", [(p.time, p.last) for p in series.points])

# %% [markdown]
# ## Errors
# Every failing call raises a civicbus.Error subclass carrying the C++ message.

# %%
try:
    node.broker.publish("permit.revoked", {"permit": 1})
except civicbus.NotFound as error:
    print(f"{type(error).__name__} ({error.code}): {error}")

# %%
pipeline.close()
node.close()
print("tour done")
