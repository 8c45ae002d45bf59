"""Broker: publish/subscribe with Python handlers on the node's worker threads, schemas, the
DLQ and replay."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import pytest

import civicbus
from conftest import wait_until


def test_publish_subscribe_round_trip_on_a_worker_thread(node: civicbus.Node) -> None:
    broker = node.broker
    broker.create_topic("permit.issued", "permits-team", description="A permit was issued")
    received: list[civicbus.Event] = []
    threads: set[int] = set()
    lock = threading.Lock()

    def handler(event: civicbus.Event) -> None:
        with lock:
            received.append(event)
            threads.add(threading.get_ident())

    with broker.subscribe("gis-sync", "permit.*", handler, start_from="earliest") as sub:
        assert sub.active and sub.group == "gis-sync"
        acks = [broker.publish("permit.issued", {"permit": n, "address": "1 Main St",
                                                 "fees": [1.5, 2], "paid": n % 2 == 0},
                               subject=f"permit-{n}", source="civicbus://pytest")
                for n in range(3)]
        assert [a.offset for a in acks] == sorted(a.offset for a in acks)
        assert all(a.id and not a.duplicate for a in acks)
        assert wait_until(lambda: len(received) == 3)
    assert not sub.active
    by_permit = {e.data["permit"]: e for e in received}
    assert sorted(by_permit) == [0, 1, 2]
    event = by_permit[1]
    assert event.type == event.topic == "permit.issued"
    assert event.source == "civicbus://pytest"
    assert event.subject == "permit-1"
    assert event.data == {"permit": 1, "address": "1 Main St", "fees": [1.5, 2], "paid": False}
    assert event.attempt == 1 and not event.replay
    assert event.stored_at.tzinfo is not None
    assert event.document["specversion"] == "1.0"
    # Handlers ran on the node's worker threads, not on the test's.
    assert threading.get_ident() not in threads


def test_publish_with_attributes_and_duplicates(node: civicbus.Node) -> None:
    broker = node.broker
    broker.create_topic("permit.issued", "permits-team")
    when = datetime(2026, 11, 22, 14, 52, tzinfo=timezone.utc)
    first = broker.publish("permit.issued", {"n": 1}, id="evt-1", time=when,
                           partition_key="lot-7", extensions={"tenant": "lac-clair"})
    again = broker.publish("permit.issued", {"n": 1}, id="evt-1", time=when)
    assert first.id == "evt-1" and again.duplicate
    events = broker.read("permit.>", 0, 10)
    assert len(events) == 1
    assert events[0].time.startswith("2026-11-22T14:52:00")
    assert events[0].partition_key == "lot-7"
    assert events[0].document["tenant"] == "lac-clair"
    ack = broker.publish_event({"specversion": "1.0", "id": "evt-2", "source": "x:y",
                                "type": "permit.issued", "data": {"n": 2}})
    assert ack.id == "evt-2"
    assert broker.topic("permit.issued").records == 2


def test_a_failing_handler_retries_then_dead_letters_and_replays(node: civicbus.Node) -> None:
    broker = node.broker
    broker.create_topic("permit.issued", "permits-team")
    attempts: list[int] = []
    healthy = threading.Event()

    def handler(event: civicbus.Event) -> None:
        attempts.append(event.attempt)
        if not healthy.is_set():
            raise ValueError(f"GIS is down for permit {event.data['permit']}")

    sub = broker.subscribe("gis-sync", "permit.issued", handler, max_deliveries=2,
                           initial_backoff=0.01, max_backoff=0.05, start_from="earliest")
    broker.publish("permit.issued", {"permit": 7})
    assert wait_until(lambda: len(broker.dead_letters(group="gis-sync")) == 1)
    letter = broker.dead_letters(group="gis-sync")[0]
    assert letter.topic == "permit.issued" and letter.attempts == 2
    assert "ValueError: GIS is down for permit 7" in letter.error
    assert letter.replayed_at is None
    assert attempts == [1, 2]
    assert broker.dead_letters(group="gis-sync", error_contains="nothing like this") == []

    healthy.set()
    replayed: list[civicbus.Event] = []
    sub.stop()
    sub = broker.subscribe("gis-sync", "permit.issued", lambda e: replayed.append(e),
                           start_from="earliest")
    assert broker.replay_dead_letters(group="gis-sync") == 1
    assert wait_until(lambda: len(replayed) == 1)
    assert replayed[0].replay and replayed[0].data == {"permit": 7}
    sub.stop()
    groups = {g.group: g for g in broker.groups()}
    assert groups["gis-sync"].topics == ["permit.issued"]


def test_a_civicbus_error_in_a_handler_keeps_its_message(node: civicbus.Node) -> None:
    broker = node.broker
    broker.create_topic("permit.issued", "permits-team")

    def handler(event: civicbus.Event) -> None:
        raise civicbus.Unavailable("the GIS service answered 503")

    with broker.subscribe("gis", "permit.issued", handler, max_deliveries=1,
                          start_from="earliest"):
        broker.publish("permit.issued", {})
        assert wait_until(lambda: len(broker.dead_letters(group="gis")) == 1)
    assert "the GIS service answered 503" in broker.dead_letters(group="gis")[0].error


def test_stopping_a_subscription_from_its_own_handler_is_refused(node: civicbus.Node) -> None:
    broker = node.broker
    broker.create_topic("permit.issued", "permits-team")
    errors: list[BaseException] = []
    holder: dict[str, civicbus.Subscription] = {}
    ready = threading.Event()

    def handler(event: civicbus.Event) -> None:
        ready.wait(5)
        try:
            holder["sub"].stop()
        except civicbus.FailedPrecondition as error:
            errors.append(error)

    holder["sub"] = broker.subscribe("g", "permit.issued", handler, start_from="earliest")
    ready.set()
    broker.publish("permit.issued", {})
    assert wait_until(lambda: len(errors) == 1)
    assert "cannot be stopped from inside its own handler" in str(errors[0])
    holder["sub"].stop()


def test_schemas_guard_published_data(node: civicbus.Node) -> None:
    broker = node.broker
    schema: dict[str, Any] = {"type": "object", "required": ["roll_number"],
                              "properties": {"roll_number": {"type": "string"}}}
    version = broker.register_schema("property.assessment", schema)
    assert version.version == 1 and version.state == "active" and version.schema == schema
    broker.create_topic("property.assessment.updated", "assessment",
                        schema_subject="property.assessment")
    broker.publish("property.assessment.updated", {"roll_number": "0101"})
    with pytest.raises(civicbus.InvalidArgument) as caught:
        broker.publish("property.assessment.updated", {"roll_number": 101})
    assert "roll_number" in caught.value.message
    assert [v.version for v in broker.schema_versions("property.assessment")] == [1]
    assert "property.assessment.updated" in str(broker.asyncapi())


def test_audit_log_records_what_happened(node: civicbus.Node) -> None:
    broker = node.broker
    broker.create_topic("permit.issued", "permits-team", actor="alice")
    records = broker.audit_records()
    assert any(r.action == "topic.created" and r.actor == "alice" for r in records)
    report = broker.verify_audit()
    assert report.intact and report.records >= 1
