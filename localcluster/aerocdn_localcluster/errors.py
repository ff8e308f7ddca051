"""Errors of the local control plane harness."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The local control plane could not be built, started or reached; the message says why."""
