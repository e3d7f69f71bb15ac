"""Token counts: the estimate's properties, and tiktoken with each model's own encoding.

tiktoken downloads its encodings on first use; there is no network here, so the tiktoken tests
use the copies litellm ships (in the test extra), found the way tiktoken finds any cache:
``TIKTOKEN_CACHE_DIR``. tiktoken checks each file's hash, so these are the real encodings.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgptt.openai_api import ESTIMATE, estimate_tokens, load_counter
from stages.errors import ConfigurationError

MODELS = ["gpt-4", "gpt-4o", "gpt-4o-mini"]


def bundled_encodings() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


@pytest.fixture
def encodings(monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = bundled_encodings()
    if folder is None:
        pytest.fail("litellm (the test extra) ships the encodings these tests read")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))
    return folder


# --- the estimate -----------------------------------------------------------------------------


def test_the_estimate_on_examples() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("Hi") == 1
    assert estimate_tokens("Hello from upstream: Hello") == 7  # 26 ASCII characters
    assert estimate_tokens("日本語") == 3
    assert estimate_tokens("café") == 2  # 3 ASCII characters, then é


@given(st.text(), st.text())
def test_the_estimate_grows_with_the_text_and_is_subadditive(a: str, b: str) -> None:
    whole = estimate_tokens(a + b)
    assert estimate_tokens(a) <= whole <= estimate_tokens(a) + estimate_tokens(b)
    assert (whole == 0) == (a + b == "")


@given(st.text())
def test_the_estimate_is_between_a_quarter_and_one_per_character(text: str) -> None:
    assert len(text) / 4 <= estimate_tokens(text) <= len(text)


def test_the_prompt_is_framed_as_openai_frames_chat_messages() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    # 3 to prime the reply, and per message 3 + role + content.
    assert ESTIMATE.prompt("gpt-4o", messages) == 3 + (3 + 2 + 3) + (3 + 1 + 1)
    usage = ESTIMATE.usage("gpt-4o", 14, "Hello")
    assert usage["prompt_tokens"] == 14
    assert usage["completion_tokens"] == 2
    assert usage["total_tokens"] == 16
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


# --- tiktoken --------------------------------------------------------------------------------


def test_tiktoken_counts_each_model_with_its_own_encoding(encodings: Path) -> None:
    import tiktoken

    counter = load_counter(MODELS, "auto")
    assert counter.method == "tiktoken"
    text = "Tokenization differs: 1234567 ünïcödé ‘quotes’ — and spaces    here."
    o200k = len(tiktoken.get_encoding("o200k_base").encode(text))
    cl100k = len(tiktoken.get_encoding("cl100k_base").encode(text))
    assert o200k != cl100k  # the text tells the encodings apart
    assert counter.text("gpt-4o", text) == counter.text("gpt-4o-mini", text) == o200k
    assert counter.text("gpt-4", text) == cl100k


def test_tiktoken_gives_the_usage_openai_reports(encodings: Path) -> None:
    """The API reference's chat example: a developer message "You are a helpful
    assistant." and a user's "Hello!" to gpt-4o, answered "Hello there, how may I assist
    you today?", reports 19 prompt and 10 completion tokens."""
    counter = load_counter(MODELS, "tiktoken")
    messages = [
        {"role": "developer", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ]
    prompt = counter.prompt("gpt-4o", messages)
    usage = counter.usage("gpt-4o", prompt, "Hello there, how may I assist you today?")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (19, 10)
    assert usage["total_tokens"] == 29


def test_special_token_markers_are_counted_as_text(encodings: Path) -> None:
    counter = load_counter(["gpt-4o"], "tiktoken")
    assert counter.text("gpt-4o", "<|endoftext|>") > 1


def test_without_the_encodings_auto_falls_back_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty cache and a loader that cannot download (no network in tests): the
    estimate, with the reason; ``tiktoken`` asked for explicitly is an error."""
    import tiktoken.load

    def offline(blobpath: str, expected_hash: str | None = None) -> bytes:
        raise OSError(f"no network to fetch {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file_cached", offline)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    counter = load_counter(MODELS, "auto")
    assert counter.method == "estimate"
    assert "tiktoken cannot load its encodings" in counter.note
    assert "no network" in counter.note
    with pytest.raises(ConfigurationError, match="cannot count tokens with tiktoken"):
        load_counter(MODELS, "tiktoken")


def test_the_estimate_when_asked_for() -> None:
    assert load_counter(MODELS, "estimate") is ESTIMATE
    with pytest.raises(ConfigurationError, match="must be one of"):
        load_counter(MODELS, "exact")  # type: ignore[arg-type]


def test_remembered_counts_are_the_counts(encodings: Path) -> None:
    """Prompts' messages are counted through a cache; what it gives is what the encoding
    gives, for texts short enough to be remembered and longer ones alike."""
    counter = load_counter(MODELS, "tiktoken")

    @settings(deadline=None)
    @given(st.lists(st.text(max_size=5000), min_size=1, max_size=4))
    def check(texts: list[str]) -> None:
        messages = [{"role": "user", "content": text} for text in texts]
        for model in MODELS:
            expected = 3 + sum(3 + 1 + counter.text(model, text) for text in texts)
            assert counter.prompt(model, messages) == expected
            assert counter.prompt(model, messages) == expected  # remembered now

    check()
