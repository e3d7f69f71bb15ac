"""``chatgptt serve``: the provider behind an OpenAI-compatible HTTP API.

Any OpenAI client (the ``openai`` SDK, agent frameworks, litellm…) can talk to a site through
it: ``POST /v1/chat/completions`` (stream or not, with ``usage``), ``GET /v1/models``,
``GET /health``; OpenAI's error objects; an optional API key; bounded concurrency with an
upstream pool to match; graceful shutdown; several worker processes through gunicorn.

- :mod:`.app`: the application (:func:`make_app`, :func:`make_runner`, :class:`ServeOptions`).
- :mod:`.chat_request`: the request body checked, agent conversations laid out as text.
- :mod:`.errors`: OpenAI's error shape for every failure.
- :mod:`.usage`: token counts (tiktoken or an estimate).
- :mod:`.serve`: running it (:func:`serve`).
"""

from chatgptt.openai_api.app import STATE_KEY, ServeOptions, ServerState, make_app, make_runner
from chatgptt.openai_api.chat_request import ChatRequest, parse_chat_request, to_provider_messages
from chatgptt.openai_api.errors import OpenAIError
from chatgptt.openai_api.serve import api_url, serve
from chatgptt.openai_api.usage import ESTIMATE, UsageCounter, estimate_tokens, load_counter

__all__ = [
    "ESTIMATE",
    "STATE_KEY",
    "ChatRequest",
    "OpenAIError",
    "ServeOptions",
    "ServerState",
    "UsageCounter",
    "api_url",
    "estimate_tokens",
    "load_counter",
    "make_app",
    "make_runner",
    "parse_chat_request",
    "serve",
    "to_provider_messages",
]
