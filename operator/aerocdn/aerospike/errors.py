"""Typed errors for Aerospike info replies.

An info command can fail in three ways that the operator must tell apart:

* the server answered ``ERROR:<code>:<message>`` (:class:`InfoErrorReply`), e.g.
  ``ERROR:7:unstable cluster`` or ``ERROR:25:enterprise only``;
* the server answered ``type=unknown`` for an object it does not know, e.g.
  ``namespace/nosuchns`` (:class:`UnknownObjectReply`); this is not an ``ERROR:`` reply and the
  Python client does not raise for it;
* the node could not be asked at all (:class:`NodeUnreachable`): refused, timed out, no route.

A reply that does not have the shape we expect is a :class:`ReplyParseError`, which names the
command and the field.
"""

from __future__ import annotations

# Codes seen in real replies (see tests/unit/aerospike/fixtures/README.md).
CODE_PARAMETER = 4  # bad parameter, unrecognized command
CODE_CLUSTER_KEY_MISMATCH = 7  # "unstable cluster" and "cluster not specified size"
CODE_NAMESPACE_NOT_FOUND = 20
CODE_ENTERPRISE_ONLY = 25


class AerospikeInfoError(Exception):
    """Base class of every error raised by aerocdn.aerospike."""


class InfoErrorReply(AerospikeInfoError):
    """The server answered ``ERROR:<code>:<message>`` to ``command``."""

    def __init__(
        self, command: str, code: int | None, message: str, node: str | None = None
    ) -> None:
        self.command = command
        self.code = code
        self.message = message
        self.node = node
        where = f" on {node}" if node else ""
        code_text = "" if code is None else str(code)
        super().__init__(f"{command!r}{where} answered ERROR:{code_text}:{message}")

    @property
    def raw(self) -> str:
        """The reply as the server sent it, ``ERROR:<code>:<message>``."""
        return f"ERROR:{'' if self.code is None else self.code}:{self.message}"

    @property
    def enterprise_only(self) -> bool:
        return self.code == CODE_ENTERPRISE_ONLY


class UnknownObjectReply(AerospikeInfoError):
    """The server answered ``type=unknown``: the object named in ``command`` does not exist."""

    def __init__(self, command: str, node: str | None = None) -> None:
        self.command = command
        self.node = node
        where = f" on {node}" if node else ""
        super().__init__(f"{command!r}{where} answered type=unknown: no such object")


class NodeUnreachable(AerospikeInfoError):
    """The node could not be asked (connection refused, timeout, ...)."""

    def __init__(self, node: str, address: str, reason: str) -> None:
        self.node = node
        self.address = address
        self.reason = reason
        super().__init__(f"{node} ({address}) cannot be reached: {reason}")


class ReplyParseError(AerospikeInfoError):
    """A reply did not have the expected shape; names the command and the field."""

    def __init__(self, command: str, problem: str) -> None:
        self.command = command
        self.problem = problem
        super().__init__(f"reply to {command!r}: {problem}")
