"""The ``ChatGptt`` provider: the standard pipeline assembled into a gpt4free provider.

The class owns what calls share — the per-loop HTTP session, the per-site nonce
cache, the assembled pipeline — and turns each call into an :class:`Exchange`
that flows through it. Pointing it elsewhere, changing its settings or its
stages is subclassing (``class Mirror(ChatGptt): url = ...``) or
:meth:`ChatGptt.derive`, never editing the library.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

import aiohttp
import attrs
import structlog

from stages.bootstrap import FetchPage
from stages.cache import TokenCache
from stages.classic.decode import DecodeReply
from stages.classic.payload import PROCESS_SALT, BuildPayload, conversation_client_id
from stages.classic.tokens import ExtractTokens
from stages.classic.transport import PostForm
from stages.config import DEFAULT_HEADERS, Limits, RetryPolicy, Settings, Site, Timeouts
from stages.core import Call, Exchange, Pipeline, Stage, TextStream, require
from stages.errors import (
    ConfigurationError,
    redact_url,
)
from stages.layers import assemble
from stages.messages import normalize_messages

from .providers import Messages, Provider
from .session import SessionRegistry
from .stream import AnswerStream

__all__ = ["ChatGptt", "standard_pipeline"]

_CLIENT_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_HISTORY_MODES = ("messages", "flatten")
#: Options the caller may pass as keyword arguments; any others go to ``Call.options``.
_OPTIONS = frozenset(
    {"timeout", "timeouts", "limits", "retry", "history", "client_id", "session", "stream"}
)

#: Every provider class on a loop shares that loop's session.
SESSIONS = SessionRegistry()


def standard_pipeline() -> Pipeline:
    """The five standard stages, in order: bootstrap, tokens, payload, transport, decode."""
    return Pipeline(
        [FetchPage(), ExtractTokens(), BuildPayload(), PostForm(), DecodeReply()],
        name="chatgptt",
    )


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
    #: ``messages`` (real history) or ``flatten`` (the whole conversation as one message).
    history: ClassVar[str] = "messages"
    #: Seconds a fetched nonce is reused (a rejection refetches sooner).
    token_ttl: ClassVar[float] = 10 * 3600.0

    #: The stages, unwrapped; :func:`stages.layers.assemble` adds the layers.
    pipeline: ClassVar[Pipeline] = standard_pipeline()
    #: Nonces per site, shared by every provider class.
    token_cache: ClassVar[TokenCache] = TokenCache()
    sessions: ClassVar[SessionRegistry] = SESSIONS

    _assembled: ClassVar[tuple[Pipeline, Stage, Stage] | None] = None
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
    def with_pipeline(cls, pipeline: Pipeline, *, name: str | None = None) -> type[ChatGptt]:
        """A subclass that runs ``pipeline`` (which the standard layers then wrap)."""
        if not isinstance(pipeline, Pipeline):
            raise ConfigurationError(
                f"with_pipeline needs a Pipeline, got {type(pipeline).__name__}"
            )
        return cls.derive(name, pipeline=pipeline)

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
        )
        cls._settings_cache = (key, settings)
        return settings

    @classmethod
    def assembled(cls, *, trace: bool = True) -> Stage:
        """The class's pipeline with the standard layers around it (built once).

        ``trace=False``: the same without the tracing layers, which the calls use
        while structlog is unconfigured (they would log nothing anyway).
        """
        cached = cls.__dict__.get("_assembled")
        if cached is None or cached[0] is not cls.pipeline:
            cached = (cls.pipeline, assemble(cls.pipeline), assemble(cls.pipeline, trace=False))
            cls._assembled = cached
        return cast("Stage", cached[1] if trace else cached[2])

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
        ``flatten``), ``client_id`` (the conversation's id), ``session`` (your own
        ``aiohttp.ClientSession``). Others are passed to custom stages in
        ``exchange.call.options``; gpt4free's generic ones (``temperature``…) have no
        effect: the site picks the model's parameters.

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
        if structlog.is_configured():
            with structlog.contextvars.bound_contextvars(request_id=call.request_id):
                exchange = await cls.assembled(trace=True)(exchange)
        else:
            exchange = await cls.assembled(trace=False)(exchange)
        return call, require(exchange.text, "decode", "text")

    @classmethod
    async def _make_call(
        cls, model: str, messages: Messages, proxy: str | None, kwargs: dict[str, Any]
    ) -> Call:
        resolved = cls.get_model(model)
        validated = normalize_messages(messages)
        settings, session, client_id, extra = cls._options(kwargs)
        if proxy is not None:
            _check_proxy(proxy)
        if session is None:
            session = await cls.sessions.get()
        loop = asyncio.get_running_loop()
        total = settings.timeouts.total
        return Call(
            request_id=os.urandom(6).hex(),
            model=resolved,
            messages=validated,
            settings=settings,
            session=session,
            proxy=proxy or None,
            client_id=client_id or conversation_client_id(validated, salt=PROCESS_SALT),
            deadline=None if total is None else loop.time() + total,
            token_cache=cls.token_cache,
            options=extra,
        )

    @classmethod
    def _options(
        cls, kwargs: dict[str, Any]
    ) -> tuple[Settings, aiohttp.ClientSession | None, str | None, dict[str, Any]]:
        """Split the keyword arguments into per-call settings and options for custom stages."""
        settings = cls.settings()
        if not kwargs:
            return settings, None, None, {}
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
        client_id = kwargs.get("client_id")
        if client_id is not None and (
            not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id)
        ):
            raise ConfigurationError(
                f"client_id must be 1 to 64 letters or digits, got {client_id!r}"
            )
        session = kwargs.get("session")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ConfigurationError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        extra = {key: value for key, value in kwargs.items() if key not in _OPTIONS}
        if changes:
            settings = attrs.evolve(settings, **changes)
        return settings, session, client_id, extra
