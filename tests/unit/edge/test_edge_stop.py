"""The edge's stop is bounded even when a background loop swallows a cancellation (seen on
the Aerospike tier: a probe loop lost its cancel inside a tier call and slept on, so
Edge.stop() - and the pod's shutdown - never returned)."""

from __future__ import annotations

import asyncio
import contextlib

from aerocdn.edge.app import stop_tasks


async def test_a_loop_that_swallows_one_cancel_is_still_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # what a converted cancellation amounts to
                swallowed += 1
                if swallowed > 2:
                    raise

    async def polite() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(polite())]
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks(tasks, wait=0.05), 10)
    assert all(t.done() for t in tasks) and swallowed == 3


async def test_a_task_that_never_stops_is_given_up_on_not_waited_for_forever() -> None:
    released = asyncio.Event()

    async def immortal() -> None:  # ignores every cancel until the test releases it
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks([task], rounds=3, wait=0.01), 10)
    assert not task.done()
    released.set()  # leave nothing running: the test's loop closes next
    await asyncio.wait_for(task, 10)
