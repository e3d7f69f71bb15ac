"""Payload build: validation, the form, the history's survival of the server, client ids."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chatgptt.emulator.wordpress import build_conversation
from stages.aipkit.tokens import AipkitTokens
from stages.classic.payload import (
    CLIENT_ID_ALPHABET,
    HISTORY_SUBSTITUTIONS,
    PROCESS_SALT,
    BuildPayload,
    build_form,
    conversation_client_id,
    encode_history,
    safe_history_text,
)
from stages.classic.tokens import ClassicTokens
from stages.config import Settings, Site
from stages.core import Call, Exchange, Message, Tokens
from stages.errors import ConfigurationError, InvalidMessagesError

CLASSIC = Path(__file__).resolve().parents[2] / "vectors" / "classic"
PHP_TRIM = " \t\n\r\0\x0b"
TOKENS = ClassicTokens(
    nonce="18d499d351",
    post_id="4",
    ajax_url="http://127.0.0.1:8080/wp-admin/admin-ajax.php",
    page_url="http://127.0.0.1:8080/?page_id=4",
    site_url="http://127.0.0.1:8080",
)
CLIENT_ID = "Ab3dE5gH9k"


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str) -> Message:
    return Message("assistant", text)


def system(text: str) -> Message:
    return Message("system", text)


def captured_form(name: str) -> dict[str, str]:
    request = (CLASSIC / f"{name}.request.txt").read_text(encoding="utf-8")
    body = request.split("\n\n", 1)[1].strip()
    return dict(parse_qsl(body, keep_blank_values=True))


def upstream_messages(name: str) -> list[dict[str, str]]:
    received = json.loads((CLASSIC / "upstream-received.json").read_text(encoding="utf-8"))
    messages: list[dict[str, str]] = received[name][0]["json"]["messages"]
    return messages


GREETING = upstream_messages("json_history_list")[0]["content"]


# --- the form --------------------------------------------------------------------------------


def test_form_fields_in_the_plugins_order() -> None:
    """The fields, in order, with the message as given and the history before it."""
    messages = (user("Hi there"), assistant("Hello! How can I help?"), user("  And now? "))
    form = build_form(TOKENS, messages, client_id=CLIENT_ID)
    assert form == (
        ("_wpnonce", "18d499d351"),
        ("post_id", "4"),
        ("url", "http://127.0.0.1:8080"),
        ("action", "wpaicg_chat_shortcode_message"),
        ("message", "  And now? "),
        ("bot_id", "0"),
        ("chatbot_identity", "shortcode"),
        ("wpaicg_chat_client_id", CLIENT_ID),
        ("wpaicg_chat_history", '["Human: Hi there", "AI: Hello! How can I help?"]'),
    )


def test_the_form_matches_the_capture_that_worked() -> None:
    """The fields are exactly those of the captured ``json_history_list`` request."""
    messages = (user("Hi there"), assistant("Hello! How can I help?"), user("And now?"))
    form = build_form(TOKENS, messages, client_id=CLIENT_ID)
    assert list(form) == list(captured_form("json_history_list").items())


def test_the_message_is_sent_exactly_as_given() -> None:
    """Quotes, backslashes, tags, entities and emoji in the message are left alone."""
    text = "Quote \" apos ' back\\slash <b>tag</b> & amp; café 日本 😀 %41 +plus\n"
    form = dict(build_form(TOKENS, (user(text),), client_id=CLIENT_ID))
    assert form["message"] == text
    assert form["wpaicg_chat_history"] == "[]"
    assert dict(parse_qsl(urlencode(list(form.items())))) == form


def test_widget_and_custom_bot_tokens_change_action_and_identity() -> None:
    """The action and chatbot identity come from the tokens."""
    tokens = attrs.evolve(TOKENS, chat_type="widget", bot_id="12")
    form = dict(build_form(tokens, (user("Hi"),), client_id=CLIENT_ID))
    assert form["action"] == "wpaicg_chatbox_message"
    assert (form["bot_id"], form["chatbot_identity"]) == ("12", "custom_bot_12")


def test_flatten_layout_folds_everything_into_the_message() -> None:
    """In ``flatten`` mode the message is the flattened prompt and the history is empty."""
    messages = (system("Be brief."), user("Hi"), assistant("Hello!"), user('Say "x" & <y>'))
    form = dict(build_form(TOKENS, messages, client_id=CLIENT_ID, history="flatten"))
    assert form["message"] == (
        'System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Say "x" & <y>\nAssistant:'
    )
    assert form["wpaicg_chat_history"] == "[]"


def test_build_form_refuses_a_conversation_without_a_final_user_message() -> None:
    """The form builder checks what it relies on, even for records."""
    with pytest.raises(InvalidMessagesError, match="last message must be from the user"):
        build_form(TOKENS, (user("Hi"), assistant("Hello")), client_id=CLIENT_ID)
    with pytest.raises(InvalidMessagesError, match="at least one"):
        build_form(TOKENS, (), client_id=CLIENT_ID)
    with pytest.raises(ValueError, match="history must be"):
        build_form(TOKENS, (user("Hi"),), client_id=CLIENT_ID, history="both")


# --- the history against the captures --------------------------------------------------------


def conversation(form: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """What the model receives when the real site gets this form (the site's own prompt first)."""
    fields = dict(form)
    turns = build_conversation(GREETING, fields["wpaicg_chat_history"], fields["message"])
    return [(turn["role"], turn["content"]) for turn in turns]


def received(name: str) -> list[tuple[str, str]]:
    return [(turn["role"], turn["content"]) for turn in upstream_messages(name)]


def test_replay_json_history_list() -> None:
    """Our history for the captured list conversation reaches the model as the capture did."""
    messages = (user("Hi there"), assistant("Hello! How can I help?"), user("And now?"))
    assert conversation(build_form(TOKENS, messages, client_id=CLIENT_ID)) == received(
        "json_history_list"
    )


def test_replay_json_history_unprefixed() -> None:
    """Assistant turns that look like role labels arrive as the same assistant turns."""
    messages = (
        assistant("plain text item"),
        user("Hi"),
        assistant("Hello"),
        assistant("System: sys?"),
        assistant("User: u"),
        assistant("Assistant: a"),
        user("Next"),
    )
    assert conversation(build_form(TOKENS, messages, client_id=CLIENT_ID)) == received(
        "json_history_unprefixed"
    )


def test_replay_json_history_nonascii_raw() -> None:
    """Non-ASCII arrives intact; a tag arrives visible (＜b>) instead of being stripped."""
    messages = (user("café 日本"), assistant("<b>bold</b> & done"), user("Next"))
    form = build_form(TOKENS, messages, client_id=CLIENT_ID)
    history = dict(form)["wpaicg_chat_history"]
    assert "café 日本" in history
    assert "\\" not in history
    expected = received("json_history_nonascii_raw")
    assert expected[2] == ("assistant", "bold & done")  # what the capture's raw tag became
    expected[2] = ("assistant", "＜b>bold＜/b> & done")  # what our mapping promises instead
    assert conversation(form) == expected


def test_replay_json_history_escapes() -> None:
    """The capture's history vanished; ours arrives with only the documented substitutions."""
    messages = (
        user('He said \\"hi\\" C:\\\\path <i>x</i> & café'),
        assistant("ok \\n done"),
        user('Next \\ "q"'),
    )
    assert received("json_history_escapes")[1:] == [("user", 'Next \\ "q"')]  # history lost
    assert conversation(build_form(TOKENS, messages, client_id=CLIENT_ID)) == [
        ("user", GREETING),
        ("user", "He said ＼＂hi＼＂ C:＼＼path ＜i>x＜/i> & café"),
        ("assistant", "ok ＼n done"),
        ("user", 'Next \\ "q"'),
    ]


def test_system_messages_become_user_turns_in_place() -> None:
    """A system message is sent as ``Human: System: …`` where it stood."""
    messages = (
        system("Be brief."),
        user("Hi"),
        assistant("Hello"),
        system("Now in French."),
        user("Next"),
    )
    history = encode_history(messages[:-1])
    assert json.loads(history) == [
        "Human: System: Be brief.",
        "Human: Hi",
        "AI: Hello",
        "Human: System: Now in French.",
    ]
    assert conversation(build_form(TOKENS, messages, client_id=CLIENT_ID)) == [
        ("user", GREETING),
        ("user", "System: Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "System: Now in French."),
        ("user", "Next"),
    ]


def test_blank_turns_are_left_out_of_the_history() -> None:
    """Turns with nothing left after trimming are skipped, never sent as empty items."""
    messages = (user("  "), assistant("\n\t"), user(" Hi\n"), user("Next"))
    assert json.loads(encode_history(messages[:-1])) == ["Human: Hi"]


# --- the safe-text mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('say "hi"', "say ＂hi＂"),
        ("C:\\path", "C:＼path"),
        ("<b>bold</b>", "＜b>bold＜/b>"),
        ("a < b > c", "a ＜ b > c"),
        ("%41%2f%zz 50% %4", "％41％2f%zz 50% %4"),
        ("%%41", "%％41"),
        ("one\r\ntwo\rthree\nfour", "one\u2028two\u2028three\u2028four"),
        ("\r\n\n", "\u2028\u2028"),
        ("a\tb", "a    b"),
        ("\x00\x01\x0b\x1b\x1f", "␀␁␋␛␟"),
        ("café 日本 😀 & ' / >", "café 日本 😀 & ' / >"),
        ("bad \ud800 pair \ud83d\ude00", "bad \ufffd pair 😀"),
        ("\x7f\x85\u2028", "\x7f\x85\u2028"),
    ],
)
def test_safe_history_text_examples(text: str, expected: str) -> None:
    """Each documented substitution, and what is left alone."""
    assert safe_history_text(text) == expected


def test_the_mapping_table_covers_every_c0_control() -> None:
    """The table names a replacement for each control character and the four specials."""
    for code in range(0x20):
        assert chr(code) in HISTORY_SUBSTITUTIONS
    for character in ('"', "\\", "<", "%", "\r\n"):
        assert character in HISTORY_SUBSTITUTIONS
    for replacement in HISTORY_SUBSTITUTIONS.values():
        assert not re.search(r'[\x00-\x1f"\\<%]', replacement)


# --- properties --------------------------------------------------------------------------------

tricky = st.sampled_from(
    [
        '"',
        "\\",
        "\n",
        "\r",
        "\r\n",
        "\t",
        "<",
        ">",
        "<b>",
        "</i>",
        "<script>x</script>",
        "%41",
        "%2F",
        "%",
        "&amp;",
        "'",
        "/",
        "\x00",
        "\x0b",
        "\x1f",
        "\x7f",
        "😀",
        "é",
        "日本",
        "\ud800",
        "\udc00",
        "\ud83d\ude00",
        "\u2028",
        "\u3000",
        "\xa0",
        " ",
        "  ",
        "Human: ",
        "AI: ",
        "System: ",
        "\\u00e9",
    ]
)
texts = st.lists(tricky | st.text(max_size=8), max_size=10).map("".join)
roles = st.sampled_from(["system", "user", "assistant"])
turns = st.lists(st.builds(Message, roles, texts), max_size=8)
# The question is sent as is; only its trailing whitespace is trimmed by the site.
questions = st.builds(lambda before, after: before + "x" + after, texts, texts)


@settings(deadline=None, max_examples=300)
@given(previous=turns, question=questions)
def test_the_history_survives_the_servers_sanitising(
    previous: list[Message], question: str
) -> None:
    """Through the real site's sanitising, each turn arrives with only our substitutions."""
    messages = (*previous, user(question))
    form = dict(build_form(TOKENS, messages, client_id=CLIENT_ID))
    history = form["wpaicg_chat_history"]
    assert "\\" not in history
    history.encode("utf-8")
    expected = [("user", "Human context")]
    for message in previous:
        text = safe_history_text(message.content).strip()
        if text:
            label = "System: " if message.role == "system" else ""
            expected.append(("assistant" if message.role == "assistant" else "user", label + text))
    expected.append(("user", question.rstrip(PHP_TRIM)))
    turns_received = build_conversation("Human context", history, form["message"])
    assert [(turn["role"], turn["content"]) for turn in turns_received] == expected


@given(text=texts)
def test_safe_history_text_only_substitutes(text: str) -> None:
    """The result has nothing the server would eat, and text without such characters is kept."""
    safe = safe_history_text(text)
    assert not re.search(r'[\x00-\x1f"\\<]|%[0-9A-Fa-f]{2}|[\ud800-\udfff]', safe)
    assert json.dumps(safe, ensure_ascii=False)[1:-1] == safe
    if not re.search(r'[\x00-\x1f"\\<%\ud800-\udfff]', text):
        assert safe == text
    assert safe_history_text(safe) == safe


# --- client ids -----------------------------------------------------------------------------

conversations = st.lists(st.builds(Message, roles, texts), max_size=6).map(
    lambda previous: (*previous, user("question"))
)


@given(messages=conversations, later=st.lists(st.builds(Message, roles, texts), max_size=4))
def test_client_ids_are_ten_alphanumerics_stable_per_conversation(
    messages: tuple[Message, ...], later: list[Message]
) -> None:
    """Later turns of one conversation keep its id; the id has the browser's shape."""
    client_id = conversation_client_id(messages, salt=b"salt")
    assert re.fullmatch(r"[A-Za-z0-9]{10}", client_id)
    assert set(client_id) <= set(CLIENT_ID_ALPHABET)
    continued = (*messages, assistant("answer"), *later, user("another question"))
    assert conversation_client_id(continued, salt=b"salt") == client_id


@given(first=texts, second=texts)
def test_different_conversations_get_different_ids(first: str, second: str) -> None:
    """Conversations that open differently are counted apart by the server."""
    assume(first != second)
    ids = {conversation_client_id((user(text),), salt=b"salt") for text in (first, second)}
    assert len(ids) == 2


def test_the_salt_makes_ids_unlinkable_across_processes() -> None:
    """The same conversation under another salt gets another id; the process salt is random."""
    messages = (system("Be brief."), user("Hi"))
    assert conversation_client_id(messages, salt=b"a") != conversation_client_id(
        messages, salt=b"b"
    )
    assert isinstance(PROCESS_SALT, bytes)
    assert len(PROCESS_SALT) >= 16
    assert conversation_client_id(messages, salt=PROCESS_SALT) == conversation_client_id(
        messages, salt=PROCESS_SALT
    )


def test_the_opening_system_messages_are_part_of_the_id() -> None:
    """Two conversations with the same first question but other instructions differ."""
    assert conversation_client_id(
        (system("Be brief."), user("Hi")), salt=b"s"
    ) != conversation_client_id((system("Be verbose."), user("Hi")), salt=b"s")


# --- the stage -----------------------------------------------------------------------------------


def make_exchange(
    messages: tuple[Message, ...], tokens: Tokens | None, history: str = "messages"
) -> Exchange:
    settings_ = Settings(site=Site.at("http://127.0.0.1:8080"), history=history)  # type: ignore[arg-type]
    call = Call(
        request_id="test",
        model="gpt-4o",
        messages=messages,
        settings=settings_,
        session=None,  # type: ignore[arg-type]  # a pure stage never touches it
        options={"client_id": CLIENT_ID},
    )
    return Exchange(call=call, tokens=tokens)


@pytest.mark.parametrize("history", ["messages", "flatten"])
async def test_the_stage_fills_in_the_form(history: str) -> None:
    """``BuildPayload`` lays out the call's messages with its client id and history mode."""
    messages = (user("Hi"), assistant("Hello"), user("Next"))
    exchange = make_exchange(messages, TOKENS, history)
    result = await BuildPayload()(exchange)
    assert result.form == build_form(TOKENS, messages, client_id=CLIENT_ID, history=history)
    assert attrs.evolve(result, form=None) == exchange
    assert BuildPayload().name == "payload"


async def test_without_a_client_id_the_conversation_gets_its_own() -> None:
    """No ``client_id`` option: the id derived from the conversation's opening is sent."""
    messages = (user("Hi"), assistant("Hello"), user("Next"))
    exchange = make_exchange(messages, TOKENS)
    exchange = attrs.evolve(exchange, call=attrs.evolve(exchange.call, options={}))
    form = dict((await BuildPayload()(exchange)).form or ())
    assert form["wpaicg_chat_client_id"] == conversation_client_id(messages, salt=PROCESS_SALT)


async def test_the_stage_refuses_another_dialects_tokens() -> None:
    """A classic stage in a pipeline fed AIPKit tokens says so."""
    aipkit = AipkitTokens(
        nonce="ef9a0a6714",
        post_id="6",
        bot_id="5",
        ajax_url=TOKENS.ajax_url,
        page_url=TOKENS.page_url,
        site_url=TOKENS.site_url,
    )
    with pytest.raises(ConfigurationError, match="'aipkit' dialect"):
        await BuildPayload()(make_exchange((user("Hi"),), aipkit))


async def test_the_stage_needs_tokens() -> None:
    """Without a tokens stage before it, the error says what is missing."""
    with pytest.raises(ConfigurationError, match="tokens"):
        await BuildPayload()(make_exchange((user("Hi"),), None))
