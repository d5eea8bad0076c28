"""Many WebSocket clients in one asyncio process, each timing the arrival of one expected message.

Duplicates are counted on the raw frames: a second frame with the armed marker on a connection
that already has its message (a client that drops repeated seqs would hide it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Opener = Callable[[ClientConnection], Awaitable[None]]


class ClientPool:
    """Connections that record when a message containing the armed marker arrives (perf_counter)."""

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self._readers: list[asyncio.Task[None]] = []
        self._marker: str | None = None
        self._arrivals: list[float | None] = []
        self._waiting = 0
        self._all_arrived = asyncio.Event()
        self.sample: str | None = None  # the first matching message of the last round
        self.duplicates = 0  # frames of the armed marker beyond the first, over all connections

    def __len__(self) -> int:
        return len(self.sockets)

    async def grow(
        self,
        url: str,
        target: int,
        *,
        concurrency: int,
        subprotocols: Sequence[str] = (),
        on_open: Opener | None = None,
        timeout_s: float = 60.0,
    ) -> list[float]:
        """Open connections until there are `target`, at most `concurrency` handshakes at a time.

        Returns each new connection's open time in seconds (handshake plus `on_open`).
        """
        gate = asyncio.Semaphore(concurrency)
        durations: list[float] = []

        async def open_one() -> None:
            async with gate:
                started = time.perf_counter()
                ws = await connect(
                    url,
                    subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
                    open_timeout=timeout_s,
                    ping_interval=None,
                    max_queue=None,
                    compression=None,
                )
                if on_open is not None:
                    await asyncio.wait_for(on_open(ws), timeout_s)
                durations.append(time.perf_counter() - started)
                self._add(ws)

        await asyncio.gather(*(open_one() for _ in range(target - len(self.sockets))))
        return durations

    def _add(self, ws: ClientConnection) -> None:
        index = len(self.sockets)
        self.sockets.append(ws)
        self._arrivals.append(None)
        self._readers.append(asyncio.create_task(self._read(index, ws)))

    async def _read(self, index: int, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                marker = self._marker
                if marker is None:
                    continue
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                if marker not in text:
                    continue
                if self._arrivals[index] is not None:
                    self.duplicates += 1
                else:
                    self._arrivals[index] = time.perf_counter()
                    if self.sample is None:
                        self.sample = text
                    self._waiting -= 1
                    if self._waiting == 0:
                        self._all_arrived.set()

    def arm(self, marker: str) -> None:
        """Expect one message containing `marker` on every connection from now on."""
        self._arrivals = [None] * len(self.sockets)
        self._waiting = len(self.sockets)
        self._all_arrived = asyncio.Event()
        self.sample = None
        self.duplicates = 0
        self._marker = marker

    async def collect(self, timeout_s: float, *, grace_s: float = 0.0) -> list[float | None]:
        """Arrival times once every connection has its message, or at the timeout (None: missing).

        `grace_s`: how long to keep counting duplicates after the last arrival."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_arrived.wait(), timeout_s)
        if grace_s > 0:
            await asyncio.sleep(grace_s)
        self._marker = None
        return list(self._arrivals)

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self.sockets.clear()
        self._readers.clear()
