"""One reading of the workspace for every sidebar the Jupyter server serves: ``GET overview``.

Each open sidebar polls it every few seconds, several tabs and users may share one server, and a reading asks
every runtime for its instances' status. So the server keeps the last reading for ``TTL`` seconds and lets
requests that arrive while one is being made wait for it instead of making their own; any change made
through the REST API (start, stop, remove, a start that finished) drops it.
"""

from __future__ import annotations

import asyncio
import time

TTL = 2.0


class OverviewCache:
    def __init__(self, ttl: float = TTL):
        self.ttl = ttl
        self._value: dict | None = None
        self._key = None
        self._at = 0.0
        self._pending: asyncio.Future | None = None
        self.readings = 0  # how many times the workspace was read (tests check the sharing)
        self.jobs_finished = 0  # Jobs.finished when the reading was made

    def clear(self) -> None:
        self._value = None

    async def get(self, key, read) -> dict:
        """The reading for ``key`` (the workspace's home), fresh within the TTL; ``read`` is an awaitable
        factory that reads it off the event loop."""
        if self._value is not None and self._key == key and time.monotonic() - self._at < self.ttl:
            return self._value
        if self._pending is not None and self._key == key:
            return await asyncio.shield(self._pending)
        loop = asyncio.get_running_loop()
        self._key, self._pending = key, loop.create_future()
        pending = self._pending
        try:
            value = await read()
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved: the waiters re-raise it, nobody logs it as lost
            raise
        finally:
            self._pending = None
        self.readings += 1
        self._value, self._at = value, time.monotonic()
        pending.set_result(value)
        return value
