"""Cancel a GET request's handler, and so its database query, when the client goes away.

Starlette only notices a disconnect while streaming a response; a handler still waiting
on PostgreSQL would run to the end for nobody. This middleware watches the connection
for ``http.disconnect`` and cancels the handler task once; psycopg then cancels the query
on the server. (An anyio cancel scope would not do: it interrupts every later await too,
including psycopg's own cancel request, which then drops the connection while the query
runs on.)
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = ("GET", "HEAD")


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        disconnected = asyncio.Event()
        body_given = False

        async def app_receive() -> Message:
            # a GET has no body: hand the app an empty one, then wait for the disconnect
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        handler = asyncio.ensure_future(self.app(scope, app_receive, send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done():
                handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
        finally:
            watcher.cancel()
            handler.cancel()
