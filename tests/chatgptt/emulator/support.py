"""Small test aids that let tests wait for the server without sleeping."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from chatgptt.emulator import RequestRecord


class AnnouncingLog(deque[RequestRecord]):
    """A request log (``state.requests``) that calls ``on_arrival`` for each request."""

    def __init__(self, on_arrival: Callable[[], object]) -> None:
        super().__init__(maxlen=10)
        self.on_arrival = on_arrival

    def append(self, record: RequestRecord) -> None:
        super().append(record)
        self.on_arrival()
