"""Wake-ups of SSE streams: one Redis pattern subscription per API process, fanned out to the streams.

The workers and the API announce committed events on ``sqsnn:job:<id>`` (``workers.events.publish``). One
listener task per process subscribes to ``sqsnn:job:*`` and sets the ``asyncio.Event`` of every stream
watching that job, so 100 open streams cost one Redis connection, not 100. A notification only says "look
again": the stream then reads the rows from the database, so a lost message costs one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from workers.events import channel

log = logging.getLogger(__name__)
PATTERN = channel("*")
RECONNECT_S = 2.0


class Wakeups:
    """Per-process fan-out of job notifications to waiting streams (a no-op without Redis)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``job_id`` announces new rows (clear it before reading them)."""
        self._ensure_listener()
        event = asyncio.Event()
        self.waiters[job_id].add(event)
        try:
            yield event
        finally:
            self.waiters[job_id].discard(event)
            if not self.waiters[job_id]:
                del self.waiters[job_id]

    def _ensure_listener(self) -> None:
        if self.url is None:
            return
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._listen(self.url), name="sqsnn-sse-wakeups")

    async def _listen(self, url: str) -> None:
        prefix = len(PATTERN) - 1
        while True:
            client = aioredis.from_url(url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(PATTERN)
                    async for message in pubsub.listen():
                        if message["type"] != "pmessage":
                            continue
                        job_id = message["channel"].decode()[prefix:]
                        for event in self.waiters.get(job_id, ()):
                            event.set()
            except (RedisError, OSError) as exc:
                log.warning("SSE wake-ups lost their Redis subscription (%s); reconnecting", exc)
            finally:
                await client.aclose()
            await asyncio.sleep(RECONNECT_S)
