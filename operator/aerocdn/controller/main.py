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
    asyncio.run(kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
    ))
    return 0
