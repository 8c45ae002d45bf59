"""Status codes map to civicbus.Error subclasses carrying the C++ message."""

from __future__ import annotations

import pytest

import civicbus

CODES = {
    "InvalidArgument": "invalid_argument", "NotFound": "not_found",
    "AlreadyExists": "already_exists", "FailedPrecondition": "failed_precondition",
    "PermissionDenied": "permission_denied", "Unauthenticated": "unauthenticated",
    "ResourceExhausted": "resource_exhausted", "Unavailable": "unavailable",
    "DeadlineExceeded": "deadline_exceeded", "Aborted": "aborted", "Cancelled": "cancelled",
    "DataLoss": "data_loss", "IoError": "io_error", "Internal": "internal",
    "OutOfRange": "out_of_range",
}


def test_one_subclass_per_status_code() -> None:
    for name, code in CODES.items():
        cls = getattr(civicbus, name)
        assert issubclass(cls, civicbus.Error) and issubclass(cls, Exception)
        assert cls.code == code
        error = cls("what went wrong")
        assert error.code == code
        assert error.message == "what went wrong" == str(error)


def test_a_failing_call_raises_the_code_with_the_cpp_message(node: civicbus.Node) -> None:
    with pytest.raises(civicbus.NotFound) as caught:
        node.broker.topic("permit.nowhere")
    error = caught.value
    assert isinstance(error, civicbus.Error)
    assert error.code == "not_found"
    assert str(error) == error.message
    assert "permit.nowhere" in error.message


def test_invalid_input_is_invalid_argument(node: civicbus.Node) -> None:
    with pytest.raises(civicbus.InvalidArgument) as caught:
        node.broker.create_topic("Permit Issued", "team")
    assert "Permit Issued" in caught.value.message
    with pytest.raises(civicbus.InvalidArgument, match="sensitivity"):
        node.broker.create_topic("permit.x", "team", sensitivity="secret")
    node.broker.create_topic("permit.x", "team")
    with pytest.raises(civicbus.AlreadyExists):
        node.broker.create_topic("permit.x", "other-team")


def test_values_that_are_not_json_raise_type_error_naming_where(node: civicbus.Node) -> None:
    node.broker.create_topic("permit.x", "team")
    with pytest.raises(TypeError, match=r"set at \$\.tags\[1\]"):
        node.broker.publish("permit.x", {"tags": ["a", {1, 2}]})
    with pytest.raises(TypeError, match="keys are str"):
        node.broker.publish("permit.x", {1: "one"})


def test_errors_can_be_caught_as_the_base_class(node: civicbus.Node) -> None:
    try:
        node.broker.publish("permit.unknown", {"a": 1})
    except civicbus.Error as error:
        assert error.code in CODES.values()
    else:
        pytest.fail("publishing to an unknown topic must fail")
