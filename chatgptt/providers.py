"""gpt4free's provider contract, written here: ``AsyncGeneratorProvider`` and
``ProviderModelMixin``.

A provider is a class, used through classmethods: ``create_async_generator``
streams the answer; ``create_completion`` is its synchronous form and
``create_async`` collects the whole text. The mixin resolves model names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from stages.errors import UnknownModelError

from ._sync import iterate_in_background

__all__ = ["AsyncGeneratorProvider", "BaseProvider", "Messages", "ProviderModelMixin"]

#: gpt4free's message list: ``[{"role": "user", "content": "Hi"}, ...]``.
Messages = Sequence[Mapping[str, Any]]


class BaseProvider:
    """What every provider says about itself."""

    url: ClassVar[str | None] = None
    working: ClassVar[bool] = False
    needs_auth: ClassVar[bool] = False
    supports_stream: ClassVar[bool] = False
    supports_system_message: ClassVar[bool] = False
    supports_message_history: ClassVar[bool] = False

    @classmethod
    def get_dict(cls) -> dict[str, Any]:
        """The provider's name, URL and label, as gpt4free lists providers."""
        return {"name": cls.__name__, "url": cls.url, "label": getattr(cls, "label", None)}


class AsyncGeneratorProvider(BaseProvider):
    """A provider whose answer is an async iterator of text chunks."""

    @classmethod
    def create_async_generator(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncIterator[str]:
        """Stream the answer to ``messages`` as text chunks."""
        raise NotImplementedError

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, **kwargs: Any
    ) -> Iterator[str]:
        """The answer as a synchronous iterator of text chunks (one chunk when
        ``stream`` is false).

        It runs the async generator on a private event loop in a background
        thread, so it works from plain synchronous code and also from inside a
        running event loop (a notebook) — no ``nest_asyncio`` needed.
        """
        chunks = iterate_in_background(
            lambda: cls.create_async_generator(model, messages, **kwargs)
        )
        if stream:
            return chunks
        return iter(["".join(chunks)])

    @classmethod
    async def create_async(cls, model: str, messages: Messages, **kwargs: Any) -> str:
        """The whole answer as one string."""
        parts = [chunk async for chunk in cls.create_async_generator(model, messages, **kwargs)]
        return "".join(parts)


class ProviderModelMixin:
    """Model names: the default, the list, and aliases that map onto the list."""

    default_model: ClassVar[str | None] = None
    models: ClassVar[list[str]] = []
    model_aliases: ClassVar[dict[str, str]] = {}
    last_model: ClassVar[str | None] = None

    @classmethod
    def get_models(cls) -> list[str]:
        """The models this provider offers."""
        if not cls.models and cls.default_model is not None:
            return [cls.default_model]
        return list(cls.models)

    @classmethod
    def get_model(cls, model: str | None) -> str:
        """Resolve ``model``: empty means the default, aliases map onto their model.

        Raises:
            UnknownModelError: the model is not offered; the error lists those that are.
        """
        if not model:
            if cls.default_model is None:
                raise UnknownModelError("", cls.get_models())
            return cls.default_model
        if model in cls.model_aliases:
            model = cls.model_aliases[model]
        models = cls.get_models()
        if models and model not in models:
            raise UnknownModelError(model, models)
        if cls.last_model != model:  # a class attribute write invalidates attribute caches
            cls.last_model = model
        return model
