"""The stage contract, the records that flow through a pipeline, and ``Pipeline`` itself.

A stage is one step, ``async def __call__(exchange) -> exchange``, with a ``name``.
What flows is an immutable :class:`Exchange`; each stage returns an evolved copy.
A :class:`Pipeline` is a stage made of stages, and a value: inserting, replacing
or removing a stage gives a new pipeline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import attrs

from .config import Settings
from .errors import ConfigurationError, StageNotFoundError
from .watch import Watch

if TYPE_CHECKING:
    import aiohttp

    from .cache import TokenCache
    from .conversations import ConversationStore

__all__ = [
    "Body",
    "Call",
    "Exchange",
    "FunctionStage",
    "Message",
    "Page",
    "Pipeline",
    "Reply",
    "Stage",
    "TextStream",
    "Tokens",
    "require",
    "require_tokens",
    "stage",
]

Role = Literal["system", "user", "assistant"]


@attrs.frozen
class Message:
    """One turn of the conversation, validated."""

    role: Role
    content: str


@attrs.frozen(kw_only=True)
class Page:
    """The landing page as fetched: its final URL (after redirects), status and HTML.

    ``maybe_cut`` is true when the page may not have come whole: its reply declared no
    length (it ended where the connection closed, as PHP's own server sends pages) and
    it lacks its closing ``</html>``. A page without the chat's tokens is then a cut
    reply (retried), not a page without a chat.
    """

    url: str
    status: int
    html: str = attrs.field(repr=lambda html: f"<{len(html)} characters>")
    maybe_cut: bool = False


@attrs.frozen(kw_only=True)
class Tokens:
    """What a chat request needs from the landing page, in any dialect.

    Each dialect's token stage returns its own subclass carrying what only it
    needs (e.g. the classic container's chat type); the layers see only this.

    Attributes:
        dialect: the name of the dialect whose chat the page carries.
        nonce: the shared WordPress nonce of the chat.
        post_id: the page's post id (``"0"`` when the page names none).
        bot_id: the chat's bot id.
        ajax_url: WordPress's AJAX endpoint the chat talks to.
        page_url: the page the tokens came from (sent as ``Referer``).
        site_url: the site's home URL.
        streaming: whether the page says the site streams answers (``None``: it
            does not say); informational, the reply's ``Content-Type`` decides.
    """

    dialect: str
    nonce: str
    post_id: str
    bot_id: str
    ajax_url: str
    page_url: str
    site_url: str
    streaming: bool | None = None


@runtime_checkable
class Body(Protocol):
    """A reply body read as it arrives; limits and timeouts are the implementation's."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def read(self, limit: int) -> bytes:
        """The rest of the body, failing with ``ResponseTooLargeError`` past ``limit`` bytes."""
        ...

    async def aclose(self) -> None:
        """Release the connection (at once; idempotent)."""
        ...


@attrs.frozen(kw_only=True)
class Reply:
    """The chat reply: status and headers are in, the body is still on the wire."""

    url: str
    status: int
    headers: Mapping[str, str] = attrs.field(eq=False, repr=False)
    body: Body = attrs.field(eq=False, repr=False)

    @property
    def media_type(self) -> str:
        """The ``Content-Type`` without parameters, lower case (``""`` when absent)."""
        value = self.headers.get("Content-Type", "")
        return value.split(";", 1)[0].strip().lower()


class TextStream:
    """The answer: an async iterator of text chunks that owns the reply's connection.

    :meth:`prime` reads up to the first non-empty chunk, so that a failure before
    any text reaches the caller happens inside the pipeline (where it can be
    retried) rather than while the caller iterates.
    """

    __slots__ = ("_chunks", "_closed", "_first", "_on_close", "primed")

    def __init__(
        self,
        chunks: AsyncIterator[str],
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._chunks = chunks
        self._on_close = on_close
        self._first: str | None = None
        self._closed = False
        self.primed = False

    @classmethod
    def of(cls, *texts: str) -> TextStream:
        """A stream of known chunks (a JSON answer, a test)."""
        return cls(_KnownChunks(texts))

    async def prime(self) -> None:
        """Read ahead to the first non-empty chunk (or the end); idempotent."""
        if self.primed:
            return
        self.primed = True
        async for chunk in self._chunks:
            if chunk:
                self._first = chunk
                return

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        first = self._first
        if first is not None:
            self._first = None
            return first
        while True:
            chunk = await self._chunks.__anext__()
            if chunk:
                return chunk

    async def aclose(self) -> None:
        """Stop reading and release the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if self._on_close is not None:
                await self._on_close()


class _KnownChunks:
    """An async iterator over chunks already in memory (cheaper than an async generator)."""

    __slots__ = ("_items",)

    def __init__(self, items: tuple[str, ...]) -> None:
        self._items = iter(items)

    def __aiter__(self) -> _KnownChunks:
        return self

    async def __anext__(self) -> str:
        for item in self._items:
            return item
        raise StopAsyncIteration


@attrs.frozen(kw_only=True)
class Call:
    """What the caller asked for, fixed for the whole call, plus the shared services.

    Attributes:
        request_id: bound to every log line of the call.
        model: the model asked for (the site picks its own; kept for stages that care).
        messages: the validated conversation.
        settings: site, dialect, limits, timeouts, retry policy, history mode.
        session: the shared ``aiohttp`` session (connection pool, cookies).
        proxy: used for every request of the call; never logged.
        headers: extra headers for every request of this call (e.g. the ``User-Agent``
            of the browser that passed the site's challenge); they win over the
            site's and the stages' own. Never logged.
        cookies: cookies sent with every request of this call only (e.g. a
            ``cf_clearance``); never stored in the shared jar, never logged.
        deadline: event-loop time (``loop.time()``) by which the call must end.
        token_cache: the provider's cache of each site's tokens.
        conversations: the provider's store of server-side conversations (for
            dialects whose server keeps the history).
        options: the caller's other keyword arguments, for the stages that read them.
        watch: the one timer of the call's network waits (``stages.watch``); whoever
            ends the call closes it.
    """

    request_id: str
    model: str
    messages: tuple[Message, ...]
    settings: Settings
    session: aiohttp.ClientSession = attrs.field(eq=False, repr=False)
    proxy: str | None = attrs.field(default=None, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    cookies: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    deadline: float | None = None
    token_cache: TokenCache | None = attrs.field(default=None, eq=False, repr=False)
    conversations: ConversationStore | None = attrs.field(default=None, eq=False, repr=False)
    options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    watch: Watch = attrs.field(factory=Watch, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class Exchange:
    """What flows through the pipeline; each stage fills in its part.

    Attributes:
        call: the request and services, fixed for the call.
        page: the landing page (bootstrap).
        dialect: the name of the dialect the site speaks (chosen from the page, the
            cache or the caller).
        tokens: nonce, post id, AJAX URL (token extraction).
        form: the fields to POST, in order (payload build).
        query: the fields of a GET the dialect sends besides its POST (payload
            build; e.g. AIPKit's stream request), in order.
        reply: the HTTP reply with its body unread (transport).
        text: the answer's text chunks (stream decode).
        notes: free-form values custom stages pass along.
    """

    call: Call
    page: Page | None = None
    dialect: str | None = None
    tokens: Tokens | None = None
    form: tuple[tuple[str, str], ...] | None = None
    query: tuple[tuple[str, str], ...] | None = None
    reply: Reply | None = None
    text: TextStream | None = None
    notes: Mapping[str, Any] = attrs.field(factory=dict)


_T = TypeVar("_T")
_TokensT = TypeVar("_TokensT", bound=Tokens)


def require(value: _T | None, stage_name: str, what: str) -> _T:
    """Return ``value``, or fail clearly when an earlier stage did not provide it."""
    if value is None:
        raise ConfigurationError(
            f"stage {stage_name!r} needs the exchange's {what}, which no earlier stage provided; "
            "check the pipeline's order"
        )
    return value


def require_tokens(exchange: Exchange, kind: type[_TokensT], stage_name: str) -> _TokensT:
    """The exchange's tokens as the dialect's own record ``kind``, or a clear error when
    an earlier stage provided none or another dialect's (a pipeline mixing dialects)."""
    tokens = require(exchange.tokens, stage_name, "tokens")
    if not isinstance(tokens, kind):
        raise ConfigurationError(
            f"stage {stage_name!r} needs {kind.__name__} but got {type(tokens).__name__} "
            f"(tokens of the {tokens.dialect!r} dialect); a stage of one dialect ran in "
            "another's pipeline"
        )
    return tokens


@runtime_checkable
class Stage(Protocol):
    """One async step of the request flow. Stages are shared by concurrent calls: keep
    per-call state in the exchange, not on the stage."""

    @property
    def name(self) -> str:
        """The stage's name in its pipeline."""
        ...

    async def __call__(self, exchange: Exchange, /) -> Exchange: ...


@attrs.frozen
class FunctionStage:
    """A stage made from a plain ``async def f(exchange) -> exchange``."""

    name: str
    function: Callable[[Exchange], Awaitable[Exchange]] = attrs.field(repr=False)

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        return await self.function(exchange)


def stage(name: str) -> Callable[[Callable[[Exchange], Awaitable[Exchange]]], FunctionStage]:
    """Decorator: turn ``async def f(exchange) -> exchange`` into a stage called ``name``."""

    def wrap(function: Callable[[Exchange], Awaitable[Exchange]]) -> FunctionStage:
        return FunctionStage(name, function)

    return wrap


async def _release(exchange: Exchange) -> None:
    """A stage failed: let go of the connection an earlier stage opened (the reply, or
    the answer stream made of it), so a retry does not wait behind it."""
    if exchange.text is not None:
        await exchange.text.aclose()
    elif exchange.reply is not None:
        await exchange.reply.body.aclose()


def _as_stages(items: Iterable[Stage]) -> tuple[Stage, ...]:
    return tuple(items)


def _check_stages(_inst: object, _attr: object, stages: tuple[Stage, ...]) -> None:
    seen: set[str] = set()
    for item in stages:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not callable(item):
            raise ConfigurationError(f"not a stage (no name or not callable): {item!r}")
        if name in seen:
            raise ConfigurationError(f"two stages are named {name!r}; stage names must be unique")
        seen.add(name)


@attrs.frozen
class Pipeline:
    """Stages run in order; itself a stage, so pipelines nest and layers wrap them."""

    stages: tuple[Stage, ...] = attrs.field(converter=_as_stages, validator=_check_stages)
    name: str = "pipeline"

    async def __call__(self, exchange: Exchange, /) -> Exchange:
        for step in self.stages:
            try:
                exchange = await step(exchange)
            except BaseException:
                await _release(exchange)
                raise
        return exchange

    @property
    def names(self) -> tuple[str, ...]:
        """The stages' names, in order."""
        return tuple(step.name for step in self.stages)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Stage:
        return self.stages[self._index(name)]

    def _index(self, name: str) -> int:
        for index, step in enumerate(self.stages):
            if step.name == name:
                return index
        raise StageNotFoundError(name, self.names)

    def _with(self, stages: list[Stage]) -> Pipeline:
        return attrs.evolve(self, stages=tuple(stages))

    def insert_before(self, name: str, new: Stage) -> Pipeline:
        """A new pipeline with ``new`` just before the stage called ``name``."""
        stages = list(self.stages)
        stages.insert(self._index(name), new)
        return self._with(stages)

    def insert_after(self, name: str, new: Stage) -> Pipeline:
        """A new pipeline with ``new`` just after the stage called ``name``."""
        stages = list(self.stages)
        stages.insert(self._index(name) + 1, new)
        return self._with(stages)

    def replace(self, name: str, new: Stage) -> Pipeline:
        """A new pipeline with the stage called ``name`` replaced by ``new``."""
        stages = list(self.stages)
        stages[self._index(name)] = new
        return self._with(stages)

    def remove(self, name: str) -> Pipeline:
        """A new pipeline without the stage called ``name``."""
        stages = list(self.stages)
        del stages[self._index(name)]
        return self._with(stages)

    def append(self, new: Stage) -> Pipeline:
        """A new pipeline with ``new`` at the end."""
        return self._with([*self.stages, new])
