"""The GIL is released around blocking C++ calls and taken back for Python callbacks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import civicbus
from conftest import http, node_config, wait_until


def test_a_handler_runs_while_the_main_thread_blocks_in_run(tmp_path: Path) -> None:
    # The main thread sits in Node.run() (C++, GIL released); the subscriber handler runs
    # Python on a worker thread and stops the node. Without the release this deadlocks.
    with civicbus.Node(node_config(), data_dir=str(tmp_path / "d")) as node:
        node.broker.create_topic("ping.sent", "ops")
        handled = threading.Event()

        def handler(event: civicbus.Event) -> None:
            total = sum(range(10_000))  # real Python work on the worker thread
            assert total > 0
            handled.set()
            node.stop()

        sub = node.broker.subscribe("pong", "ping.sent", handler, start_from="earliest")
        publisher = threading.Timer(0.1, lambda: node.broker.publish("ping.sent", {"n": 1}))
        publisher.start()
        node.run()
        publisher.join()
        assert handled.is_set()
        sub.stop()


def test_python_threads_progress_while_a_cpp_call_blocks(tmp_path: Path) -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    with civicbus.Node(node_config(), data_dir=str(tmp_path / "d")) as node:
        counter = threading.Thread(target=count)
        counter.start()
        threading.Timer(0.3, node.stop).start()
        before = ticks
        node.run()  # blocks in C++ for ~0.3 s
        during = ticks - before
        stop.set()
        counter.join()
    assert during > 10


def test_a_route_handler_calls_back_into_the_node_while_main_waits(tmp_path: Path) -> None:
    # A gateway worker runs the Python handler, which publishes through the broker (a C++
    # call that releases the GIL again) while the main thread waits on the HTTP answer.
    config = node_config(gateway={"listener": {"port": 0, "threads": 2}},
                         topics=[{"name": "audit.hit", "owner": "ops"}])
    with civicbus.Node(config, data_dir=str(tmp_path / "d")) as node:
        gateway = node.gateway
        assert gateway is not None
        gateway.add_route("/hit", lambda r: {"offset": node.broker.publish(
            "audit.hit", {"path": r.path}).offset}, match="exact")
        results: list[int] = []
        port = gateway.port

        def client() -> None:
            results.append(http("GET", f"http://127.0.0.1:{port}/hit")[0])

        clients = [threading.Thread(target=client) for _ in range(8)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=20)
        assert results == [200] * 8
        assert wait_until(lambda: node.broker.topic("audit.hit").records == 8)


def test_closing_a_node_waits_for_running_handlers(tmp_path: Path) -> None:
    node = civicbus.Node(node_config(), data_dir=str(tmp_path / "d"))
    node.broker.create_topic("slow.job", "ops")
    started = threading.Event()
    finished = threading.Event()

    def handler(event: civicbus.Event) -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    sub = node.broker.subscribe("slow", "slow.job", handler, start_from="earliest")
    node.broker.publish("slow.job", {})
    assert started.wait(10)
    node.close()  # stops the subscription first, waiting for the handler (GIL released)
    assert finished.is_set()
    assert not sub.active


def test_a_handler_cannot_close_the_node_that_runs_it(tmp_path: Path) -> None:
    # Closing waits for running handlers: from inside one it would wait for itself.
    with civicbus.Node(node_config(), data_dir=str(tmp_path / "d")) as node:
        node.broker.create_topic("ops.shutdown", "ops")
        errors: list[civicbus.Error] = []

        def handler(event: civicbus.Event) -> None:
            try:
                node.close()
            except civicbus.FailedPrecondition as error:
                errors.append(error)

        sub = node.broker.subscribe("ops", "ops.shutdown", handler, start_from="earliest")
        node.broker.publish("ops.shutdown", {})
        assert wait_until(lambda: len(errors) == 1)
        assert "cannot be closed from inside a handler" in errors[0].message
        assert not node.closed
        sub.stop()
