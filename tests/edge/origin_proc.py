"""An origin in its own process, for tests that kill it (SIGKILL) mid-load.

``python -m tests.edge.origin_proc NAME PORT DELAY``: every request is answered after DELAY
seconds with ``NAME <path>``, header ``X-Origin-Name: NAME`` and ``Cache-Control:
max-age=300``. It prints ``ready`` once it listens."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def main(name: str, port: int, delay: float) -> None:
    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(text=f"{name} {request.path}", headers={
            "X-Origin-Name": name, "Cache-Control": "max-age=300"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
