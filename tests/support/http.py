"""Client-side HTTP helpers: the real transport, counting what the client sends."""

from __future__ import annotations

import httpx2


class CountingTransport(httpx2.AsyncHTTPTransport):
    """The real transport, counting the requests the client tried to send (retries included),
    also those that never reached a server."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.attempts += 1
        return await super().handle_async_request(request)
