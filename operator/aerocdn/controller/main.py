"""`aerocdn run`: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import logging

import kopf

from aerocdn.controller.runtime import RUNTIME


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    RUNTIME.configure(args)
    from aerocdn.controller import handlers  # noqa: F401  (registers the kopf handlers)

    namespaces = args.namespace or []
    # kopf only watches; which replica reconciles is decided by our Lease (leader.py), so
    # kopf's own peering is off: equal-priority peers would freeze each other.
    asyncio.run(kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
    ))
    return 0
