"""A small upstream for the proxy's tests and benchmark (not part of Kong).

Every request is answered with JSON describing what arrived (method, raw path, headers in
order, the first 64 KiB of the body and its length), unless query arguments ask for
something else:

- ``_status=N``: answer with that status;
- ``_delay=S``: wait S seconds before answering;
- ``_sse=N`` (with ``_gap=S``): stream N server-sent events, S seconds apart;
- ``_fast=1``: answer ``ok`` at once (the benchmark's upstream).

``python -m kongsim.proxy.echo PORT`` runs it on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import parse_qs

from aiohttp import web


class EchoUpstream:
    """The upstream application plus what it saw (``hits`` counts requests)."""

    def __init__(self) -> None:
        self.hits = 0
        self.sse_sent: list[float] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        args = {k: v[-1] for k, v in parse_qs(request.query_string).items()}
        if "_fast" in args:
            return web.Response(text="ok")
        if "_delay" in args:
            await asyncio.sleep(float(args["_delay"]))
        if "_sse" in args:
            return await self._sse(request, int(args["_sse"]), float(args.get("_gap", "0.2")))
        body = await request.read()
        payload = {
            "method": request.method,
            "path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body[:65536].decode("latin-1"),
            "body_length": len(body),
        }
        return web.json_response(
            payload, status=int(args.get("_status", "200")), headers={"X-Upstream": "echo"}
        )

    async def _sse(self, request: web.Request, count: int, gap: float) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(count):
            if i:
                await asyncio.sleep(gap)
            self.sse_sent.append(time.monotonic())
            await response.write(f"data: event {i}\n\n".encode())
        await response.write_eof()
        return response

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    web.run_app(EchoUpstream().app(), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
