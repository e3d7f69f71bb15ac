"""The gpt4free provider contract as ``ChatGptt`` implements it: :class:`Provider`.

``Provider`` holds what ``ChatGptt`` must own whichever gpt4free runs it (or none): the
synchronous and collecting entry points and model resolution. What a gpt4free release
expects beyond that — the attributes and helpers its ``Client``, ``AsyncClient`` and
``ChatCompletion`` look up — comes from that release's own ``AsyncGeneratorProvider`` and
``ProviderModelMixin``: once gpt4free is imported, they become ``Provider``'s bases
(:mod:`chatgptt._gpt4free`). Until then, and when gpt4free is not installed, the base is
:class:`Standalone`: the few attributes gpt4free documents for every provider.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from stages.errors import UnknownModelError

from . import _gpt4free
from ._sync import iterate_in_background

__all__ = ["Messages", "Provider", "Standalone"]

#: gpt4free's message list: ``[{"role": "user", "content": "Hi"}, ...]``.
Messages = Sequence[Mapping[str, Any]]


class Standalone(ABC):  # noqa: B024  (an ABC for its metaclass and layout, not for abstracts)
    """``Provider``'s base without gpt4free: what every gpt4free provider says about itself.

    An ``ABC`` like gpt4free's own bases: CPython swaps bases only between classes of the
    same object layout, and ``ABC``-rooted classes have their own; it keeps the metaclass.
    """

    url: ClassVar[str | None] = None
    working: ClassVar[bool] = False
    needs_auth: ClassVar[bool] = False
    supports_stream: ClassVar[bool] = False
    supports_system_message: ClassVar[bool] = False
    supports_message_history: ClassVar[bool] = False
    default_model: ClassVar[str | None] = None
    models: ClassVar[list[str]] = []
    model_aliases: ClassVar[dict[str, str]] = {}
    last_model: ClassVar[str | None] = None

    @classmethod
    def get_dict(cls) -> dict[str, Any]:
        """The provider's name, URL and label, as gpt4free lists providers."""
        return {"name": cls.__name__, "url": cls.url, "label": getattr(cls, "label", None)}


class Provider(Standalone):
    """A provider whose answer is an async iterator of text chunks, used through
    classmethods; its methods come first in the MRO, before any gpt4free base.

    Subclasses implement :meth:`create_async_generator`; ``create_completion`` is its
    synchronous form and ``create_async`` collects the whole text.
    """

    @classmethod
    @abstractmethod
    def create_async_generator(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncIterator[str]:
        """Stream the answer to ``messages`` as text chunks."""

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, **kwargs: Any
    ) -> Iterator[str]:
        """The answer as a synchronous iterator of text chunks (one chunk when
        ``stream`` is false).

        It runs the async generator on a private event loop in a background thread,
        so it works from plain synchronous code and also from inside a running event
        loop (a notebook, gpt4free's sync ``Client`` called from async code) — no
        ``nest_asyncio`` — and keeps the connection pool across calls.
        """
        chunks = iterate_in_background(
            lambda: cls.create_async_generator(model, messages, **kwargs)
        )
        if stream:
            return chunks
        return iter(["".join(chunks)])

    @classmethod
    async def create_async(cls, model: str, messages: Messages, **kwargs: Any) -> str:
        """The whole answer as one string, on the caller's loop."""
        parts = [chunk async for chunk in cls.create_async_generator(model, messages, **kwargs)]
        return "".join(parts)

    @classmethod
    def get_models(cls, **kwargs: Any) -> list[str]:
        """The models this provider offers (gpt4free's keyword arguments, such as
        ``api_key``, change nothing: the list is fixed)."""
        if not cls.models and cls.default_model is not None:
            return [cls.default_model]
        return list(cls.models)

    @classmethod
    def get_model(cls, model: str | None, **kwargs: Any) -> str:
        """Resolve ``model``: empty or ``"auto"`` (gpt4free's word for it) means the default,
        aliases map onto their model, and case does not matter (``GPT-4o``).

        Raises:
            UnknownModelError: the model is not offered; the error lists those that are.
        """
        if not model or model.lower() == "auto":
            if cls.default_model is None:
                raise UnknownModelError(model or "", cls.get_models())
            return cls.default_model
        aliases = cls.model_aliases or {}  # gpt4free's mixin defaults it to None
        model = aliases.get(model, model)
        models = cls.get_models()
        if models and model not in models:
            folded = model.lower()
            found = next((m for m in models if m.lower() == folded), None)
            if found is None:
                found = next((aliases[a] for a in aliases if a.lower() == folded), None)
            if found is None:
                raise UnknownModelError(model, models)
            model = found
        if cls.last_model != model:  # a class attribute write invalidates attribute caches
            cls.last_model = model
        return model


_gpt4free.follow(Provider)
