"""Node: opening from the embedded defaults, a dict, YAML text and a file; lifetime."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

import civicbus
from conftest import node_config


def test_embedded_defaults_open_a_running_node(tmp_path: Path) -> None:
    with civicbus.Node(data_dir=str(tmp_path / "d")) as node:
        assert node.name == "civicbus"
        assert node.data_dir == str(tmp_path / "d")
        assert (tmp_path / "d" / "civicbus.db").exists()
        assert node.gateway is None and node.fleet is None and node.connectors is None
        assert node.broker.topics() == []
        assert "civicbus_" in node.metrics_text()
    assert node.closed


def test_open_from_dict_creates_the_configured_topics(tmp_path: Path) -> None:
    config = node_config(topics=[{"name": "permit.issued", "owner": "permits-team",
                                  "retention": "3d", "sensitivity": "confidential"}])
    with civicbus.Node.open(config, data_dir=str(tmp_path / "d")) as node:
        topic = node.broker.topic("permit.issued")
        assert topic.owner == "permits-team"
        assert topic.retention == timedelta(days=3)
        assert topic.sensitivity == "confidential"


def test_open_from_yaml_text_and_from_a_file(tmp_path: Path) -> None:
    yaml = """
node: {name: yaml-node, data_dir: data}
logging: {level: error}
security: {master_key_env: CIVICBUS_PYTEST_UNSET_KEY}
topics:
  - {name: tax.bill.issued, owner: finance}
"""
    (tmp_path / "node.yaml").write_text(yaml)
    with civicbus.Node.from_file(str(tmp_path / "node.yaml")) as node:
        assert node.name == "yaml-node"
        # Relative paths in a file are taken from the file's folder.
        assert node.data_dir == str(tmp_path / "data")
        assert node.config_file == str(tmp_path / "node.yaml")
        assert [t.name for t in node.broker.topics()] == ["tax.bill.issued"]
    with civicbus.Node(yaml, data_dir=str(tmp_path / "other")) as node:
        assert node.name == "yaml-node"
        assert node.config_file == ""


def test_configuration_errors_name_the_line_and_key(tmp_path: Path) -> None:
    with pytest.raises(civicbus.InvalidArgument) as caught:
        civicbus.Node("topics:\n  - {name: a.b, owner: x, retension: 7d}\n",
                      data_dir=str(tmp_path / "d"))
    assert caught.value.code == "invalid_argument"
    assert str(caught.value).startswith("<yaml>:2:")
    assert "did you mean 'retention'" in str(caught.value)


def test_a_data_directory_is_used_by_one_node_at_a_time(tmp_path: Path) -> None:
    with civicbus.Node(node_config(), data_dir=str(tmp_path / "d")):
        with pytest.raises(civicbus.FailedPrecondition) as caught:
            civicbus.Node(node_config(), data_dir=str(tmp_path / "d"))
        assert "in use by another civicbus node" in caught.value.message
    # Released by close(): a new node opens.
    civicbus.Node(node_config(), data_dir=str(tmp_path / "d")).close()


def test_a_closed_node_refuses_calls_on_it_and_its_components(tmp_path: Path) -> None:
    node = civicbus.Node(node_config(), data_dir=str(tmp_path / "d"))
    broker = node.broker
    node.close()
    node.close()  # idempotent
    with pytest.raises(civicbus.FailedPrecondition, match="the node is closed"):
        broker.topics()
    with pytest.raises(civicbus.FailedPrecondition):
        _ = node.name
    assert "closed" in repr(node)


def test_run_blocks_until_stop_from_another_thread(tmp_path: Path) -> None:
    with civicbus.Node(node_config(), data_dir=str(tmp_path / "d")) as node:
        timer = threading.Timer(0.2, node.stop)
        timer.start()
        node.run()  # returns once stop() is called
        timer.join()
        assert node.stop_requested


def test_close_makes_a_running_run_return(tmp_path: Path) -> None:
    node = civicbus.Node(node_config(), data_dir=str(tmp_path / "d"))
    runner = threading.Thread(target=node.run)
    runner.start()
    node.close()
    runner.join(timeout=10)
    assert not runner.is_alive()


def test_durations_and_sizes() -> None:
    assert civicbus.parse_duration("1h30m") == timedelta(minutes=90)
    assert civicbus.format_duration(timedelta(days=7)) == "7d"
    assert civicbus.format_duration(1.5) == "1500ms"
    assert civicbus.parse_size("10KiB") == 10240
    assert civicbus.format_size(1 << 30) == "1GiB"
    assert civicbus.library_version() == civicbus.__version__
    with pytest.raises(civicbus.InvalidArgument):
        civicbus.parse_duration("7 days")
