"""Ctrl-C during `tidings watch`: cancelling the watch while a message arrives at the same moment
must end it. (Python 3.11's `asyncio.wait_for` returned the message and dropped the cancellation
when both were ready together; the watch then ran on and never exited.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tidings import client
from tidings.watch_view import WatchState


class _Socket:
    """recv() waits for `arrivals`, one future per message; send() is recorded."""

    def __init__(self) -> None:
        self.arrivals: asyncio.Queue[asyncio.Future[str]] = asyncio.Queue()
        self.sent: list[str] = []

    async def recv(self) -> str:
        return await (await self.arrivals.get())

    async def send(self, text: str) -> None:
        self.sent.append(text)


class _Sink:
    def update(self, state: WatchState, accepted: tuple[Any, ...]) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def finish(self, lines: list[str]) -> None:
        pass


async def test_a_cancel_that_meets_an_arriving_message_still_ends_the_watch() -> None:
    socket = _Socket()
    task = asyncio.create_task(client._follow(socket, WatchState("j-1"), _Sink(), ping_interval=60))
    message: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    await socket.arrivals.put(message)
    await asyncio.sleep(0.01)  # the watch waits in recv for this message
    message.set_result(json.dumps({"type": "pong", "id": 0}))
    task.cancel()  # in the same instant, as SIGINT's handler does
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
