"""The answer of one call: an async iterator of text chunks that is also an async
context manager, so the connection can be released deterministically."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType

import structlog

from stages.core import Call, TextStream
from stages.errors import ChatGpttError, StreamInterruptedError
from stages.layers import log

__all__ = ["AnswerStream"]


class _Delivered:
    """The text handed to the caller so far, kept (up to a limit) for the error that
    would report an interruption."""

    __slots__ = ("chars", "limit", "parts")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.chars = 0

    def add(self, chunk: str) -> None:
        room = self.limit - self.chars
        if room > 0:
            self.parts.append(chunk if len(chunk) <= room else chunk[:room])
        self.chars += len(chunk)

    def text(self) -> str:
        return "".join(self.parts)


class AnswerStream:
    """Text chunks of the answer, as they arrive.

    Nothing is sent until the first ``__anext__`` (like a generator). Failures up to
    the first chunk come out as they are (retries are done by then); a failure after
    text was delivered is raised as :class:`StreamInterruptedError` carrying that text.
    ``aclose()`` — or leaving ``async with`` — releases the connection at once.
    """

    __slots__ = ("_call", "_closed", "_delivered", "_start", "_started_at", "_text")

    def __init__(self, start: Callable[[], Awaitable[tuple[Call, TextStream]]]) -> None:
        self._start: Callable[[], Awaitable[tuple[Call, TextStream]]] | None = start
        self._call: Call | None = None
        self._text: TextStream | None = None
        self._delivered: _Delivered | None = None
        self._closed = False
        self._started_at = 0.0

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> str:
        text = self._text
        if text is None:
            text = await self._open()
        try:
            chunk = await text.__anext__()
        except StopAsyncIteration:
            await self._finish()
            raise
        except ChatGpttError as exc:
            delivered = self._delivered
            await self.aclose()
            if delivered is None:  # pragma: no cover - set by _open
                raise
            raise StreamInterruptedError(
                delivered.text(), exc, delivered_chars=delivered.chars
            ) from exc
        except BaseException:
            await self.aclose()
            raise
        if self._delivered is not None:
            self._delivered.add(chunk)
        return chunk

    async def _open(self) -> TextStream:
        start, self._start = self._start, None
        if start is None or self._closed:
            raise StopAsyncIteration
        try:
            call, text = await start()
        except BaseException:
            self._closed = True
            raise
        self._call, self._text = call, text
        self._delivered = _Delivered(call.settings.limits.max_partial_text)
        self._started_at = time.perf_counter()
        return text

    async def _finish(self) -> None:
        await self.aclose()
        call, delivered = self._call, self._delivered
        if call is not None and delivered is not None and structlog.is_configured():
            log.info(
                "answer.completed",
                request_id=call.request_id,
                chars=delivered.chars,
                stream_ms=round((time.perf_counter() - self._started_at) * 1000.0, 3),
            )

    async def aclose(self) -> None:
        """Stop: release the connection now (idempotent; nothing is sent if not started)."""
        self._closed = True
        self._start = None
        text, self._text = self._text, None
        if text is not None:
            try:
                await text.aclose()
            finally:
                if self._call is not None:
                    self._call.watch.close()

    async def __aenter__(self) -> AnswerStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
