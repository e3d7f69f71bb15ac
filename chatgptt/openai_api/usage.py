"""Token counts for OpenAI's ``usage`` object: the site reports none, so the server counts.

With ``tiktoken`` installed and its encodings at hand, each model is counted with its own
encoding (``gpt-4o``, ``gpt-4o-mini``: ``o200k_base``; ``gpt-4``: ``cl100k_base``, as
``tiktoken.encoding_name_for_model`` says), and a conversation with OpenAI's framing of chat
messages: 3 tokens per message plus its role and content, and 3 that prime the reply. That is
what the OpenAI API reports for the same messages. Without them the counts are an estimate:
a token per 4 ASCII characters and one per other character (OpenAI's rule of thumb for
English, and about what its encodings give for other scripts), with the same framing.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from stages.errors import ConfigurationError

__all__ = [
    "ESTIMATE",
    "TOKENIZER_MODES",
    "TokenizerMode",
    "UsageCounter",
    "describe",
    "estimate_tokens",
    "load_counter",
    "usage_object",
]

TokenizerMode = Literal["auto", "tiktoken", "estimate"]
TOKENIZER_MODES: tuple[TokenizerMode, ...] = ("auto", "tiktoken", "estimate")

#: OpenAI's framing of a chat: each message costs 3 tokens besides its role and content
#: (``<|start|>``, ``<|message|>``, ``<|end|>``), and 3 prime the reply.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
#: The encoding of a model tiktoken does not know (the newer one).
DEFAULT_ENCODING = "o200k_base"
#: How long loading (perhaps downloading) the encodings may take before the estimate is used.
LOAD_TIMEOUT = 30.0

Count = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is: one per 4 ASCII characters (rounded up), plus
    one per other character. 0 for the empty string, at least 1 otherwise."""
    if text.isascii():
        return (len(text) + 3) // 4
    ascii_chars = len(text.encode("ascii", "ignore"))
    return (ascii_chars + 3) // 4 + len(text) - ascii_chars


@attrs.frozen
class UsageCounter:
    """Counts the tokens of prompts and answers, per model.

    Attributes:
        method: ``tiktoken`` or ``estimate`` — what the README and ``/health`` report.
        encoders: model name -> token counter of a text (models not listed: ``fallback``).
        fallback: the counter of any other model.
        note: why the estimate is used where tiktoken was asked for (empty otherwise).
        remembering: model name -> the same counter remembering short texts' counts, for
            the messages of prompts (sent again with each turn); answers are new each time.
    """

    method: str
    encoders: Mapping[str, Count] = attrs.field(factory=dict)
    fallback: Count = estimate_tokens
    note: str = ""
    remembering: Mapping[str, Count] = attrs.field(factory=dict)

    def text(self, model: str, text: str) -> int:
        """Tokens of ``text`` in ``model``'s encoding."""
        return self.encoders.get(model, self.fallback)(text)

    def prompt(self, model: str, messages: Iterable[Mapping[str, Any]]) -> int:
        """Tokens of a conversation of ``{"role", "content"}`` messages, as the model sees
        it: each message framed, then the reply primed."""
        count = self.remembering.get(model) or self.encoders.get(model, self.fallback)
        total = REPLY_PRIMING
        for message in messages:
            total += TOKENS_PER_MESSAGE + count(message["role"]) + count(message["content"])
        return total

    def usage(self, model: str, prompt_tokens: int, answer: str) -> dict[str, Any]:
        """OpenAI's ``usage`` object for ``answer`` to a prompt of ``prompt_tokens``."""
        return usage_object(prompt_tokens, self.text(model, answer))


def usage_object(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """OpenAI's ``usage`` object (the details it adds are all zero here)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


#: The estimate for every model.
ESTIMATE = UsageCounter("estimate")


def _load_encodings(names: Sequence[str], timeout: float) -> dict[str, Any]:
    """``tiktoken.get_encoding`` of each name, in a daemon thread so that a download stuck
    on a dead network cannot hold the server's start for longer than ``timeout``."""
    import tiktoken

    loaded: dict[str, Any] = {}
    failure: list[BaseException] = []

    def load() -> None:
        try:
            for name in names:
                loaded[name] = tiktoken.get_encoding(name)
        except Exception as exc:  # reported to the caller below
            failure.append(exc)

    worker = threading.Thread(target=load, name="chatgptt-tiktoken", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"loading {', '.join(names)} took over {timeout:g} s")
    if failure:
        raise failure[0]
    return loaded


def _encoding_name(model: str) -> str:
    import tiktoken

    try:
        return str(tiktoken.encoding_name_for_model(model))
    except KeyError:
        return DEFAULT_ENCODING


def load_counter(
    models: Iterable[str], mode: TokenizerMode = "auto", *, timeout: float = LOAD_TIMEOUT
) -> UsageCounter:
    """The counter for ``models``.

    ``estimate``: the estimate. ``tiktoken``: each model's own encoding, or a
    :class:`ConfigurationError` when tiktoken is missing or its encodings cannot be loaded.
    ``auto``: tiktoken when it can be loaded, else the estimate with a ``note`` saying why.
    tiktoken downloads an encoding on first use and keeps it in ``TIKTOKEN_CACHE_DIR``
    (or a temporary directory); offline, point that variable at a directory holding them.
    """
    if mode not in TOKENIZER_MODES:
        raise ConfigurationError(f"the tokenizer must be one of {TOKENIZER_MODES}, got {mode!r}")
    if mode == "estimate":
        return ESTIMATE
    try:
        names = {model: _encoding_name(model) for model in models}
        encodings = _load_encodings(sorted(set(names.values())), timeout)
    except ImportError:
        reason = "tiktoken is not installed (pip install 'chatgptt[serve]')"
    except Exception as exc:
        reason = f"tiktoken cannot load its encodings ({type(exc).__name__}: {exc})"
    else:
        counters = {name: _ordinary_counter(encoding) for name, encoding in encodings.items()}
        encoders = {model: counters[name] for model, name in names.items()}
        fallback = counters.get(DEFAULT_ENCODING) or next(iter(counters.values()), None)
        remembering = {name: _remembering(count) for name, count in counters.items()}
        return UsageCounter(
            "tiktoken",
            encoders,
            fallback or estimate_tokens,
            remembering={model: remembering[name] for model, name in names.items()},
        )
    if mode == "tiktoken":
        raise ConfigurationError(f"cannot count tokens with tiktoken: {reason}")
    return UsageCounter("estimate", note=reason)


#: Texts up to this long have their counts remembered (the last ``_CACHED_TEXTS`` of them):
#: conversations are sent again with each turn, system prompts with each conversation.
_CACHED_CHARS = 4096
_CACHED_TEXTS = 2048


def _ordinary_counter(encoding: Any) -> Count:
    """Tokens of a text, special-token markers (``<|endoftext|>``) counted as plain text:
    they are text the user wrote, not control tokens."""
    encode = encoding.encode_ordinary

    def count(text: str) -> int:
        return len(encode(text))

    return count


def _remembering(count: Count) -> Count:
    """``count``, remembering the counts of the last texts up to ``_CACHED_CHARS`` long."""
    remembered = functools.lru_cache(maxsize=_CACHED_TEXTS)(count)

    def counted(text: str) -> int:
        return remembered(text) if len(text) <= _CACHED_CHARS else count(text)

    return counted


def describe(counter: UsageCounter) -> str:
    """One line for the server's start: how ``usage`` is counted."""
    if counter.method == "tiktoken":
        return "usage counted with tiktoken"
    if counter.note:
        return f"usage estimated: {counter.note}"
    return "usage estimated (--usage-tokenizer estimate)"
