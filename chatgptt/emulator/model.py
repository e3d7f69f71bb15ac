"""The emulator's stand-in for the upstream model: deterministic answers from the messages.

The default reproduces the rig behind the captures (``Hello from upstream: <last user turn>``,
and OpenAI's invalid-key error for a message containing ``UPSTREAM_ERROR``), so the captured
bodies can be replayed byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import cycle, islice

__all__ = [
    "UPSTREAM_ERROR_MESSAGE",
    "UPSTREAM_ERROR_TRIGGER",
    "Message",
    "Model",
    "UpstreamError",
    "ask_model",
    "echo_model",
    "fit_answer",
    "recap_model",
]

#: One chat turn as it reaches the model: ``{"role": ..., "content": ...}``.
Message = Mapping[str, str]
#: A model: the whole conversation in, the whole answer out.
Model = Callable[[Sequence[Message]], str]

#: A current message containing this text makes the upstream fail, as in the captures.
UPSTREAM_ERROR_TRIGGER = "UPSTREAM_ERROR"
#: What OpenAI answers for a bad key; the captures relay it.
UPSTREAM_ERROR_MESSAGE = (
    "Incorrect API key provided: sk-fake. "
    "You can find your API key at https://platform.openai.com/account/api-keys."
)
_ANSWER_PREFIX = "Hello from upstream: "
_FILLER = " The quick brown fox jumps over the lazy dog."


class UpstreamError(Exception):
    """The upstream API refused the call; the site relays ``message`` to the client.

    A custom model raises it to make the emulator answer with the plugin's error forms.
    """

    def __init__(self, message: str = UPSTREAM_ERROR_MESSAGE) -> None:
        super().__init__(message)
        self.message = message


def _last_user_content(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content", "")
    return ""


def echo_model(messages: Sequence[Message]) -> str:
    """``Hello from upstream: `` plus the content of the last user-role message.

    Exactly the capture rig's upstream. Note that the site's own prompt is a user turn, so
    when the current message becomes an assistant turn (a blank message) the echo is that
    prompt, as in ``json_message_whitespace``.
    """
    return _ANSWER_PREFIX + _last_user_content(messages)


def recap_model(messages: Sequence[Message]) -> str:
    """Like :func:`echo_model`, plus how many earlier turns it saw and the first user turn.

    The earlier turns are those between the site's prompt and the current message, so the
    answer changes with the history a client sends.
    """
    earlier = list(messages[1:-1])
    first_user = next((m.get("content", "") for m in earlier if m.get("role") == "user"), None)
    first = "none" if first_user is None else f'"{first_user}"'
    return (
        f"{echo_model(messages)} (I saw {len(earlier)} earlier turns; "
        f"the first user turn was {first}.)"
    )


def fit_answer(answer: str, chars: int | None) -> str:
    """``answer`` padded with a fixed filler (or cut) to exactly ``chars`` characters.

    ``None`` keeps the answer as it is. Benchmarks use it to get answers of a known size.
    """
    if chars is None:
        return answer
    if len(answer) >= chars:
        return answer[:chars]
    return answer + "".join(islice(cycle(_FILLER), chars - len(answer)))


def ask_model(model: Model, messages: Sequence[Message]) -> str:
    """The model's answer, or :class:`UpstreamError` when the current message asks for one."""
    if messages and UPSTREAM_ERROR_TRIGGER in messages[-1].get("content", ""):
        raise UpstreamError()
    return model(messages)
