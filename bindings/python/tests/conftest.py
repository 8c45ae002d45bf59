"""Shared fixtures: nodes in temporary data directories, loopback HTTP, bounded waits."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import civicbus

# A node that neither reads the developer's master key nor logs below errors.
QUIET: dict[str, Any] = {
    "node": {"name": "pytest", "worker_threads": 2},
    "logging": {"level": "error"},
    "security": {"master_key_env": "CIVICBUS_PYTEST_UNSET_KEY"},
}


def node_config(**sections: Any) -> dict[str, Any]:
    """QUIET plus the given sections (security is merged)."""
    config: dict[str, Any] = {key: dict(value) for key, value in QUIET.items()}
    for key, value in sections.items():
        if key in config and isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


@pytest.fixture
def node(tmp_path: Path) -> Iterator[civicbus.Node]:
    """A node with the defaults (no gateway, fleet or hub) in a temporary directory."""
    n = civicbus.Node(node_config(), data_dir=str(tmp_path / "data"))
    try:
        yield n
    finally:
        n.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Polls `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request over a real socket; returns (status, headers, body) for any status."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def http_json(method: str, url: str, value: Any = None,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A JSON request and its decoded JSON answer."""
    body = None if value is None else json.dumps(value).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    status, _, data = http(method, url, body, all_headers)
    return status, json.loads(data) if data else None
