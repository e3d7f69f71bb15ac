"""The ``ChatGptt`` provider: the shared bootstrap and the dialects' stages, assembled into
a gpt4free provider.

The class owns what calls share — the per-loop HTTP session, the per-site token cache,
the store of server-side conversations, the assembled pipeline — and turns each call
into an :class:`Exchange` that flows through it. Pointing it elsewhere, changing its
settings, its dialects or their stages is subclassing (``class Mirror(ChatGptt): url =
...``) or :meth:`ChatGptt.derive`, never editing the library.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

import aiohttp
import attrs
import structlog

from stages import standard_dialects
from stages.bootstrap import FetchPage
from stages.cache import TokenCache
from stages.config import DEFAULT_HEADERS, Limits, RetryPolicy, Settings, Site, Timeouts
from stages.conversations import ConversationStore
from stages.core import Call, Exchange, Message, Pipeline, Stage, TextStream, require
from stages.dialects import AUTO, Dialects
from stages.errors import (
    ConfigurationError,
    TokensNotFoundError,
    redact_url,
)
from stages.layers import ChooseDialect, assemble, bounded, retrying
from stages.messages import normalize_messages

from .providers import Messages, Provider
from .session import SessionRegistry
from .stream import AnswerStream

__all__ = ["ChatGptt", "SiteProbe", "standard_bootstrap"]

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HISTORY_MODES = ("messages", "flatten")
#: Options the caller may pass as keyword arguments; any others go to ``Call.options``.
_SETTINGS_OPTIONS = frozenset(
    {"timeout", "timeouts", "limits", "retry", "history", "dialect", "session", "stream"}
)
#: Sent with the call's requests: checked here, then part of the call, never logged.
_REQUEST_OPTIONS = frozenset({"headers", "cookies"})

#: Every provider class on a loop shares that loop's session.
SESSIONS = SessionRegistry()


def standard_bootstrap() -> Pipeline:
    """The stages every dialect shares, before the page decides the dialect: the page fetch."""
    return Pipeline([FetchPage()], name="bootstrap")


def _check_proxy(proxy: object) -> None:
    """A proxy URL aiohttp can use (http or https, a host, a valid port), or a clear error
    that names it — credentials hidden."""
    if not isinstance(proxy, str):
        raise ConfigurationError(f"proxy must be a URL string, got {type(proxy).__name__}")
    shown = redact_url(proxy)
    try:
        parts = urlsplit(proxy)
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"the proxy URL is not valid: {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"the proxy must be an http:// or https:// URL with a host, got {shown!r}"
        )
    if port == 0:
        raise ConfigurationError(f"the proxy URL has no usable port: {shown!r}")


class _FollowsUrl:
    """``api_endpoint`` as WordPress's default for the class's ``url`` — until a class
    sets its own."""

    def __get__(self, instance: object, owner: type[ChatGptt]) -> str:
        return owner.url.rstrip("/") + "/wp-admin/admin-ajax.php"


class ChatGptt(Provider):
    """Streams answers from chatgptt.me — or from any site running the same WordPress
    chat plugin, once ``url`` points there.

    The site picks the model and its parameters; ``model`` is checked against
    :attr:`models` for gpt4free compatibility but is not a field of the protocol.
    """

    label: ClassVar[str] = "ChatGptt"
    url: ClassVar[str] = "https://chatgptt.me"
    api_endpoint: ClassVar[str] = _FollowsUrl()  # type: ignore[assignment]
    #: The landing page carrying the tokens; ``None``: the site's root.
    page_url: ClassVar[str | None] = None
    working: ClassVar[bool] = True
    supports_stream: ClassVar[bool] = True
    supports_system_message: ClassVar[bool] = True
    supports_message_history: ClassVar[bool] = True

    default_model: ClassVar[str | None] = "gpt-4o"
    models: ClassVar[list[str]] = ["gpt-4", "gpt-4o", "gpt-4o-mini"]
    model_aliases: ClassVar[dict[str, str]] = {
        "gpt-4o-2024-08-06": "gpt-4o",
        "gpt-4o-2024-11-20": "gpt-4o",
        "chatgpt-4o-latest": "gpt-4o",
        "gpt-4o-mini-2024-07-18": "gpt-4o-mini",
        "gpt-4-turbo": "gpt-4",
    }

    #: Browser headers sent with every request.
    headers: ClassVar[Mapping[str, str]] = DEFAULT_HEADERS
    timeouts: ClassVar[Timeouts] = Timeouts()
    limits: ClassVar[Limits] = Limits()
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()
    #: ``messages`` (real history, or the server's conversation) or ``flatten`` (the
    #: whole conversation folded into one message).
    history: ClassVar[str] = "messages"
    #: Seconds a fetched nonce is reused (a rejection refetches sooner).
    token_ttl: ClassVar[float] = 10 * 3600.0
    #: ``auto`` (the landing page decides) or a dialect's name: ``aipkit``, ``classic``.
    dialect: ClassVar[str] = AUTO

    #: The stages every dialect shares, before the page decides the dialect.
    bootstrap: ClassVar[Pipeline] = standard_bootstrap()
    #: The dialects spoken, in the order a page is tested against them; each has its
    #: stages (``dialects["aipkit"].pipeline``), which the standard layers wrap.
    dialects: ClassVar[Dialects] = standard_dialects()
    #: Tokens (and dialect) per site, shared by every provider class.
    token_cache: ClassVar[TokenCache] = TokenCache()
    #: The server-side conversations this provider holds (for dialects whose server keeps
    #: the history), shared likewise.
    conversations: ClassVar[ConversationStore] = ConversationStore()
    sessions: ClassVar[SessionRegistry] = SESSIONS

    _assembled: ClassVar[tuple[Pipeline, Dialects, Stage, Stage] | None] = None
    _settings_cache: ClassVar[tuple[tuple[Any, ...], Settings] | None] = None

    # --- configuration ------------------------------------------------------------------

    @classmethod
    def derive(cls, name: str | None = None, /, **attributes: Any) -> type[ChatGptt]:
        """A subclass with ``attributes`` changed.

        E.g. ``ChatGptt.derive("Mirror", url="http://127.0.0.1:8080", history="flatten")``.
        """
        unknown = [key for key in attributes if not hasattr(cls, key)]
        if unknown:
            raise ConfigurationError(
                f"{cls.__name__} has no attribute {', '.join(map(repr, unknown))}"
            )
        namespace = {
            "__module__": cls.__module__,
            "__qualname__": name or cls.__qualname__,
            **attributes,
        }
        return cast("type[ChatGptt]", type(name or cls.__name__, (cls,), namespace))

    @classmethod
    def with_pipeline(
        cls, pipeline: Pipeline, *, dialect: str, name: str | None = None
    ) -> type[ChatGptt]:
        """A subclass whose dialect ``dialect`` runs ``pipeline`` (which the standard
        layers then wrap), e.g. ``ChatGptt.dialects["aipkit"].pipeline.insert_after(...)``.

        The bootstrap is shared by every dialect: change it with ``derive(bootstrap=...)``.
        """
        if not isinstance(pipeline, Pipeline):
            raise ConfigurationError(
                f"with_pipeline needs a Pipeline, got {type(pipeline).__name__}"
            )
        shared = set(pipeline.names) & set(cls.bootstrap.names)
        if shared:
            raise ConfigurationError(
                f"the pipeline of a dialect must not hold the shared bootstrap's stages "
                f"({', '.join(sorted(shared))}); change those with derive(bootstrap=...)"
            )
        return cls.derive(name, dialects=cls.dialects.with_pipeline(dialect, pipeline))

    @classmethod
    def edit_pipelines(
        cls,
        edit: Callable[[Pipeline], Pipeline],
        *,
        dialects: Iterable[str] | None = None,
        name: str | None = None,
    ) -> type[ChatGptt]:
        """A subclass whose dialects (all, or those named) run ``edit(their pipeline)``,
        e.g. ``ChatGptt.edit_pipelines(lambda p: p.insert_after("payload", sign))``."""
        chosen = cls.dialects.names if dialects is None else tuple(dialects)
        edited = cls.dialects
        for dialect in chosen:
            edited = edited.with_pipeline(dialect, edit(edited[dialect].pipeline))
        return cls.derive(name, dialects=edited)

    @classmethod
    def pipeline_of(cls, dialect: str) -> Pipeline:
        """The stages a call in ``dialect`` runs, bootstrap included (to look at)."""
        stages = (*cls.bootstrap, *cls.dialects[dialect].pipeline)
        return Pipeline(stages, name=dialect)

    @classmethod
    def settings(cls) -> Settings:
        """The class's settings record (rebuilt when a class attribute changes)."""
        key = (
            cls.url,
            cls.api_endpoint,
            cls.page_url,
            id(cls.headers),
            cls.timeouts,
            cls.limits,
            cls.retry_policy,
            cls.history,
            cls.token_ttl,
            cls.dialect,
        )
        cached = cls.__dict__.get("_settings_cache")
        if cached is not None and cached[0] == key:
            return cast("Settings", cached[1])
        base = cls.url.rstrip("/")
        site = Site(
            url=base,
            page_url=cls.page_url or base + "/",
            api_endpoint=cls.api_endpoint,
            headers=cls.headers,
        )
        settings = Settings(
            site=site,
            timeouts=cls.timeouts,
            limits=cls.limits,
            retry=cls.retry_policy,
            history=cls.history,  # type: ignore[arg-type]  # validated by Settings
            token_ttl=cls.token_ttl,
            dialect=cls.dialects.check_choice(cls.dialect),
        )
        cls._settings_cache = (key, settings)
        return settings

    @classmethod
    def assembled(cls, *, trace: bool = True) -> Stage:
        """The class's bootstrap and dialects with the standard layers around them (built
        once per change of either).

        ``trace=False``: the same without the tracing layers, which the calls use
        while structlog is unconfigured (they would log nothing anyway).
        """
        cached = cls.__dict__.get("_assembled")
        if cached is None or cached[0] is not cls.bootstrap or cached[1] is not cls.dialects:
            bootstrap, dialects = cls.bootstrap, cls.dialects
            cached = (
                bootstrap,
                dialects,
                assemble(bootstrap, dialects),
                assemble(bootstrap, dialects, trace=False),
            )
            cls._assembled = cached
        return cast("Stage", cached[2] if trace else cached[3])

    @classmethod
    async def aclose(cls) -> None:
        """Close the running loop's shared session now (it also closes by itself when the
        loop shuts down through ``asyncio.run`` or ``asyncio.Runner``)."""
        await cls.sessions.aclose()

    # --- calls -----------------------------------------------------------------------------

    @classmethod
    def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        proxy: str | None = None,
        **kwargs: Any,
    ) -> AnswerStream:
        """Stream the answer to ``messages`` as text chunks, as they arrive.

        The result is an async iterator (``async for chunk in ...``) and an async
        context manager (``async with ... as stream:`` releases the connection on
        leaving); nothing is sent before the first chunk is asked for.

        Keyword options: ``timeout`` (seconds for the whole call), ``timeouts``,
        ``limits``, ``retry`` (a ``RetryPolicy``), ``history`` (``messages`` or
        ``flatten``), ``dialect`` (``auto``, ``aipkit``, ``classic``), ``headers`` (a
        mapping) and ``cookies`` (a mapping or a ``Cookie`` header's text) sent with
        this call's requests only (e.g. a browser's ``User-Agent`` and ``cf_clearance``
        to pass the site's bot protection; never logged), ``client_id`` (the classic
        conversation's id), ``bot_id`` (the AIPKit bot, when a page shows several),
        ``session`` (your own ``aiohttp.ClientSession``). Others are passed to custom
        stages in ``exchange.call.options``; gpt4free's generic ones (``temperature``…)
        have no effect: the site picks the model's parameters.

        Failures before the first chunk are retried per the retry policy; a failure
        after it raises :class:`StreamInterruptedError` with the text delivered.
        """
        return AnswerStream(lambda: cls._start(model, messages, proxy, kwargs))

    @classmethod
    async def _start(
        cls, model: str, messages: Messages, proxy: str | None, kwargs: dict[str, Any]
    ) -> tuple[Call, TextStream]:
        """Validate the call, run the pipeline up to the first text, return the stream."""
        call = await cls._make_call(model, messages, proxy, kwargs)
        exchange = Exchange(call=call)
        # No timer for the deadline here: every wait in the assembled pipeline honours it.
        try:
            if structlog.is_configured():
                with structlog.contextvars.bound_contextvars(request_id=call.request_id):
                    exchange = await cls.assembled(trace=True)(exchange)
            else:
                exchange = await cls.assembled(trace=False)(exchange)
            dialect = cls.dialects.get(exchange.dialect)
            text = require(exchange.text, dialect.answer_stage if dialect else "decode", "text")
        except BaseException:
            call.watch.close()
            raise
        return call, text

    @classmethod
    async def probe(cls, proxy: str | None = None, **kwargs: Any) -> SiteProbe:
        """Read the site's landing page and say what it carries, sending no message.

        Which dialect it speaks, its bot, AJAX URL and post id, whether a nonce was found,
        and whether the page says the site streams. Takes the calls' options (``timeout``,
        ``dialect``, ``headers``, ``cookies``, ``retry``…); the token cache is neither read
        nor filled, so it shows the page as it is now.

        Raises:
            ChatNotFoundError: the page carries no chat of any dialect spoken.
            BotProtectionError, ProviderConnectionError, …: as for a call.
        """
        call = attrs.evolve(
            await cls._call_for(cls.get_model(None), (), proxy, kwargs), token_cache=None
        )
        site = Pipeline([*(bounded(step) for step in cls.bootstrap), ChooseDialect(cls.dialects)])
        missing: tuple[str, ...] = ()
        try:
            exchange = await retrying(site)(Exchange(call=call))
            page = require(exchange.page, "bootstrap", "page")
            dialect = cls.dialects[require(exchange.dialect, "dialect", "dialect")]
            try:
                exchange = await Pipeline([bounded(step) for step in dialect.split()[0]])(exchange)
            except TokensNotFoundError as exc:
                missing = exc.missing
        finally:
            call.watch.close()
        tokens = exchange.tokens
        return SiteProbe(
            page_url=page.url,
            status=page.status,
            dialect=dialect.name,
            description=dialect.description,
            bot_id=tokens.bot_id if tokens is not None else None,
            ajax_url=tokens.ajax_url if tokens is not None else None,
            post_id=tokens.post_id if tokens is not None else None,
            nonce_found=tokens is not None and bool(tokens.nonce),
            streaming=tokens.streaming if tokens is not None else None,
            missing=missing,
        )

    @classmethod
    async def _make_call(
        cls, model: str, messages: Messages, proxy: str | None, kwargs: dict[str, Any]
    ) -> Call:
        return await cls._call_for(
            cls.get_model(model), normalize_messages(messages), proxy, kwargs
        )

    @classmethod
    async def _call_for(
        cls,
        resolved: str,
        validated: tuple[Message, ...],
        proxy: str | None,
        kwargs: dict[str, Any],
    ) -> Call:
        options = cls._options(kwargs)
        if proxy is not None:
            _check_proxy(proxy)
        session = options.session
        if session is None:
            session = await cls.sessions.get()
        loop = asyncio.get_running_loop()
        total = options.settings.timeouts.total
        return Call(
            request_id=os.urandom(6).hex(),
            model=resolved,
            messages=validated,
            settings=options.settings,
            session=session,
            proxy=proxy or None,
            headers=options.headers,
            cookies=options.cookies,
            deadline=None if total is None else loop.time() + total,
            token_cache=cls.token_cache,
            conversations=cls.conversations,
            options=options.extra,
        )

    @classmethod
    def _options(cls, kwargs: dict[str, Any]) -> _CallOptions:
        """Split the keyword arguments into per-call settings, the call's own headers and
        cookies, and options for the stages — each checked, with an error naming it."""
        settings = cls.settings()
        if not kwargs:
            return _CallOptions(settings=settings)
        changes: dict[str, Any] = {}
        timeouts = kwargs.get("timeouts")
        if timeouts is not None:
            if not isinstance(timeouts, Timeouts):
                raise ConfigurationError(
                    f"timeouts must be a Timeouts record, got {type(timeouts).__name__}"
                )
            changes["timeouts"] = timeouts
        if kwargs.get("timeout") is not None:
            seconds = kwargs["timeout"]
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise ConfigurationError(
                    f"timeout must be a positive number of seconds, got {seconds!r}"
                )
            changes["timeouts"] = attrs.evolve(
                changes.get("timeouts", settings.timeouts), total=float(seconds)
            )
        limits = kwargs.get("limits")
        if limits is not None:
            if not isinstance(limits, Limits):
                raise ConfigurationError(
                    f"limits must be a Limits record, got {type(limits).__name__}"
                )
            changes["limits"] = limits
        retry = kwargs.get("retry")
        if retry is not None:
            if not isinstance(retry, RetryPolicy):
                raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
            changes["retry"] = retry
        history = kwargs.get("history")
        if history is not None:
            if history not in _HISTORY_MODES:
                raise ConfigurationError(
                    f"history must be 'messages' or 'flatten', got {history!r}"
                )
            changes["history"] = history
        dialect = kwargs.get("dialect")
        if dialect is not None:
            changes["dialect"] = cls.dialects.check_choice(dialect)
        cls.dialects.check_options(kwargs)
        session = kwargs.get("session")
        if session is not None:
            if not isinstance(session, aiohttp.ClientSession):
                raise ConfigurationError(
                    f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
                )
            if session.closed:
                raise ConfigurationError("session is closed: pass an open aiohttp.ClientSession")
        extra = {
            key: value
            for key, value in kwargs.items()
            if key not in _SETTINGS_OPTIONS and key not in _REQUEST_OPTIONS
        }
        if changes:
            settings = attrs.evolve(settings, **changes)
        return _CallOptions(
            settings=settings,
            session=session,
            headers=_check_headers(kwargs.get("headers")),
            cookies=_check_cookies(kwargs.get("cookies")),
            extra=extra,
        )


@attrs.frozen(kw_only=True)
class SiteProbe:
    """What a site's landing page carries (:meth:`ChatGptt.probe`).

    Attributes:
        page_url: the page read (after redirects); ``status`` its HTTP status.
        dialect: the dialect whose chat it carries; ``description`` says which that is.
        bot_id, ajax_url, post_id: the chat's, when its tokens were found.
        nonce_found: whether the page carries the chat's nonce.
        streaming: whether the page says the site streams answers (``None``: it does not say).
        missing: what the page lacks, when its tokens were not all found.
    """

    page_url: str
    status: int
    dialect: str
    description: str
    bot_id: str | None
    ajax_url: str | None
    post_id: str | None
    nonce_found: bool
    streaming: bool | None
    missing: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class _CallOptions:
    """The keyword arguments of one call, checked and sorted."""

    settings: Settings
    session: aiohttp.ClientSession | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    cookies: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    extra: dict[str, Any] = attrs.field(factory=dict, repr=False)


def _check_headers(headers: object) -> dict[str, str]:
    """The ``headers=`` option as a dict; errors name the header, never its value."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(
            f"headers must be a mapping of names to values, got {type(headers).__name__}"
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(f"headers: {name!r} is not a valid header name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigurationError(
                f"headers[{name!r}] must be a string without line breaks or NUL characters"
            )
        checked[name] = value
    return checked


def _check_cookies(cookies: object) -> dict[str, str]:
    """The ``cookies=`` option (a mapping, or a ``Cookie`` header's ``a=1; b=2``) as a
    dict; errors name the cookie, never its value."""
    if cookies is None:
        return {}
    if isinstance(cookies, str):
        pairs: list[tuple[object, object]] = []
        for position, item in enumerate(cookies.split(";"), start=1):
            if not item.strip():
                continue
            key, equals, text = item.partition("=")
            if not equals:  # its text is not quoted: it may be a secret value
                raise ConfigurationError(
                    f"cookies: item {position} of the string has no '=' "
                    "(expected 'name=value; name2=value2')"
                )
            pairs.append((key.strip(), text.strip()))
    elif isinstance(cookies, Mapping):
        pairs = list(cookies.items())
    else:
        raise ConfigurationError(
            f"cookies must be a mapping or a Cookie header string, got {type(cookies).__name__}"
        )
    checked: dict[str, str] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not _COOKIE_NAME.fullmatch(name):
            raise ConfigurationError(f"cookies: {name!r} is not a valid cookie name")
        if not isinstance(value, str) or any(c in value for c in ";\r\n\0"):
            raise ConfigurationError(
                f"cookies[{name!r}] must be a string without ';', line breaks or NUL characters"
            )
        checked[name] = value
    return checked
