"""Cancel a GET request's handler, and so its database query, when the client goes away.

Starlette only notices a disconnect while streaming a response; a handler still waiting
on PostgreSQL would run to the end for nobody. This middleware watches the connection
for ``http.disconnect`` and cancels the handler task; psycopg then cancels the query on
the server.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = ("GET", "HEAD")


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        disconnected = anyio.Event()
        body_sent = False

        async def app_receive() -> Message:
            # a GET has no body: hand the app an empty one, then wait for the disconnect
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        disconnected.set()
                        group.cancel_scope.cancel()
                        return

            group.start_soon(watch)
            await self.app(scope, app_receive, send)
            group.cancel_scope.cancel()
