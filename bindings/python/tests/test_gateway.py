"""Gateway routes served by Python handlers, answered over real loopback sockets."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

import civicbus
from conftest import http, http_json, node_config


@pytest.fixture
def gateway() -> Iterator[civicbus.Gateway]:
    with civicbus.Gateway(port=0, threads=2, log_level="warn") as g:
        yield g


def url(g: civicbus.Gateway, path: str) -> str:
    return f"http://127.0.0.1:{g.port}{path}"


def test_a_python_route_answers_over_loopback(gateway: civicbus.Gateway) -> None:
    seen: list[civicbus.Request] = []
    threads: set[int] = set()

    def reading(request: civicbus.Request) -> dict[str, Any]:
        seen.append(request)
        threads.add(threading.get_ident())
        return {"device": request.params["id"], "limit": request.query,
                "via": request.header("x-client")}

    gateway.add_route("/devices/{id}/readings", reading, summary="Readings of a device")
    port = gateway.start()
    assert port == gateway.port and port > 0
    status, body = http_json("GET", url(gateway, "/devices/m%2D7/readings?limit=5"),
                             headers={"X-Client": "pytest"})
    assert status == 200
    assert body == {"device": "m-7", "limit": "limit=5", "via": "pytest"}
    assert seen[0].method == "GET" and seen[0].route_id == "get:/devices/{id}/readings"
    assert seen[0].remote_address == "127.0.0.1" and seen[0].request_id
    assert threading.get_ident() not in threads  # served on a gateway worker
    assert "/devices/{id}/readings" in json.dumps(gateway.openapi())


def test_bodies_responses_and_the_decorator(gateway: civicbus.Gateway) -> None:
    @gateway.route("/echo", method="POST", match="exact")
    def echo(request: civicbus.Request) -> civicbus.Response:
        payload = request.json()
        return civicbus.Response({"got": payload, "text": request.text}, status=201,
                                 headers={"X-Seen": str(len(request.body))})

    gateway.add_route("/plain", lambda r: "hello", match="exact")
    gateway.add_route("/bytes", lambda r: b"\x00\x01", match="exact")
    gateway.add_route("/empty", lambda r: None, match="exact")
    gateway.add_route("/tuple", lambda r: ("made", 202), match="exact")
    gateway.start()
    status, headers, data = http("POST", url(gateway, "/echo"), b'{"a": [1, 2]}',
                                 {"Content-Type": "application/json"})
    assert status == 201 and headers["X-Seen"] == "13"
    assert json.loads(data) == {"got": {"a": [1, 2]}, "text": '{"a": [1, 2]}'}
    status, headers, data = http("GET", url(gateway, "/plain"))
    assert (status, data) == (200, b"hello") and headers["Content-Type"].startswith("text/plain")
    status, headers, data = http("GET", url(gateway, "/bytes"))
    assert data == b"\x00\x01" and headers["Content-Type"] == "application/octet-stream"
    assert http("GET", url(gateway, "/empty"))[0] == 204
    assert http("GET", url(gateway, "/tuple"))[::2] == (202, b"made")
    # The route is POST only.
    assert http("GET", url(gateway, "/echo"))[0] == 405


def test_a_handler_that_raises_fails_closed(gateway: civicbus.Gateway,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def broken(request: civicbus.Request) -> str:
        raise RuntimeError("secret connection string in the message")

    def missing(request: civicbus.Request) -> str:
        raise civicbus.NotFound(f"no permit {request.params['id']}")

    gateway.add_route("/broken", broken, match="exact")
    gateway.add_route("/permits/{id}", missing)
    gateway.add_route("/bad-return", lambda r: {1, 2},  # type: ignore[arg-type, return-value]
                      match="exact")
    gateway.start()
    status, _, data = http("GET", url(gateway, "/broken"))
    assert status == 500
    assert b"secret" not in data and b"route 'get:/broken' failed" in data
    status, body = http_json("GET", url(gateway, "/permits/42"))
    assert status == 404 and body["code"] == "not_found" and "no permit 42" in json.dumps(body)
    assert http("GET", url(gateway, "/bad-return"))[0] == 500
    # The traceback of the bug reaches stderr for the developer.
    assert "secret connection string" in capsys.readouterr().err
    # The gateway still serves after the failures.
    assert http("GET", url(gateway, "/permits/1"))[0] == 404


def test_authenticated_routes_and_consumers(gateway: civicbus.Gateway) -> None:
    gateway.add_route("/private", lambda r: {"consumer": r.consumer_id,
                                            "groups": r.consumer_groups},
                      match="exact", auth=["api_key"])
    key = gateway.add_consumer({"id": "permits-portal", "groups": ["permits"]},
                               generate_api_key=True)
    assert key
    gateway.start()
    assert http("GET", url(gateway, "/private"))[0] == 401
    status, body = http_json("GET", url(gateway, "/private"), headers={"apikey": key})
    assert status == 200 and body == {"consumer": "permits-portal", "groups": ["permits"]}
    consumers = {c["id"]: c for c in gateway.consumers()}
    assert consumers["permits-portal"]["api_keys"] == 1
    with pytest.raises(civicbus.AlreadyExists):
        gateway.add_route("/other", lambda r: "", id="get:/private")
    with pytest.raises(civicbus.InvalidArgument):
        gateway.add_route("/x", lambda r: "", auth=["password"])


def test_the_node_gateway_serves_python_routes_that_publish(tmp_path: Path) -> None:
    config = node_config(gateway={"listener": {"port": 0}},
                         topics=[{"name": "service.request.created", "owner": "311"}])
    with civicbus.Node(config, data_dir=str(tmp_path / "d")) as node:
        gateway = node.gateway
        assert gateway is not None and gateway.port > 0
        broker = node.broker

        def create(request: civicbus.Request) -> civicbus.Response:
            ack = broker.publish("service.request.created", request.json())
            return civicbus.Response.json({"offset": ack.offset, "id": ack.id}, status=202)

        gateway.add_route("/requests", create, method="POST", match="exact")
        status, body = http_json("POST", f"http://127.0.0.1:{gateway.port}/requests",
                                 {"kind": "pothole", "where": "1 Main St"})
        assert status == 202
        events = broker.read("service.>", 0, 10)
        assert [e.data for e in events] == [{"kind": "pothole", "where": "1 Main St"}]
        assert events[0].id == body["id"]
        with pytest.raises(civicbus.FailedPrecondition, match="closed with the node"):
            gateway.close()


def test_a_closed_gateway_refuses_calls() -> None:
    g = civicbus.Gateway()
    g.start()
    g.close()
    with pytest.raises(civicbus.FailedPrecondition, match="the gateway is closed"):
        g.add_route("/x", lambda r: "")
