"""AIPKit payload build: the fields of both steps as the plugin's script sends them, and
the conversation mapping — a conversation is continued exactly when the caller's history
extends one this provider held."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from urllib.parse import parse_qsl

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from stages.aipkit.decode import DecodeAipkitStream
from stages.aipkit.payload import (
    BuildAipkitPayload,
    cache_form,
    client_message_id,
    plan_turn,
    stream_query,
)
from stages.aipkit.tokens import AipkitTokens
from stages.config import Settings, Site
from stages.conversations import ConversationStore
from stages.core import Call, Exchange, Message, Reply
from stages.errors import ChatGpttError, InvalidMessagesError
from stages.messages import flatten_prompt
from tests.conftest import VECTORS, MemoryBody

AIPKIT = VECTORS / "aipkit"
TOKENS = AipkitTokens(
    nonce="ef9a0a6714",
    post_id="6",
    bot_id="5",
    ajax_url="http://127.0.0.1:8080/wp-admin/admin-ajax.php",
    page_url="http://127.0.0.1:8080/?page_id=6",
    site_url="http://127.0.0.1:8080",
)


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str) -> Message:
    return Message("assistant", text)


def request_fields(name: str) -> list[tuple[str, str]]:
    """The urlencoded body or the query of a captured request."""
    lines = (AIPKIT / f"{name}.request.txt").read_text("utf-8").split("\n")
    method, target, _version = lines[0].split(" ")
    if method == "GET":
        return parse_qsl(target.partition("?")[2], keep_blank_values=True)
    return parse_qsl(lines[-1], keep_blank_values=True)


def test_step_one_fields_are_the_captured_ones_in_order() -> None:
    captured = request_fields("cache_ok_urlencoded")
    form = cache_form(TOKENS, "And now?", "aipkit-client-msg-5-1700000000000-ab12c")
    assert list(form) == captured


def test_step_two_fields_are_the_captured_ones_in_order() -> None:
    captured = dict(request_fields("stream_ok"))
    query = stream_query(TOKENS, captured["session_id"], captured["conversation_uuid"])
    assert [name for name, _ in query] == ["bot_id", "session_id", "conversation_uuid", "post_id"]
    assert all(captured[name] == value for name, value in query)


def test_post_id_is_sent_only_when_the_page_has_one() -> None:
    query = dict(stream_query(attrs.evolve(TOKENS, post_id="0"), "s", "c"))
    assert "post_id" not in query


def test_client_message_ids_look_like_the_scripts() -> None:
    made = client_message_id("5", now=lambda: 1700000000.0)
    assert re.fullmatch(r"aipkit-client-msg-5-1700000000000-[a-z0-9]{5}", made)
    assert made != client_message_id("5", now=lambda: 1700000000.0)


def test_a_lone_message_starts_a_conversation_as_it_is() -> None:
    turn = plan_turn((user("Hello"),), None)
    assert (turn.message, turn.continued) == ("Hello", False)
    for made in (turn.session_id, turn.conversation_uuid):
        parsed = uuid.UUID(made)
        # A version 4 UUID of the RFC's variant, written as str(uuid.uuid4()) writes one.
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, made)
    assert turn.session_id != turn.conversation_uuid


def test_earlier_turns_are_folded_into_a_new_conversation() -> None:
    messages = (Message("system", "Be brief."), user("Hi"), assistant("Hello!"), user("And?"))
    turn = plan_turn(messages, None)
    assert turn.message == flatten_prompt(messages)
    assert turn.message == "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: And?\nAssistant:"


def test_a_held_conversation_is_continued_with_the_new_message_only() -> None:
    held = {"session_id": "s-1", "conversation_uuid": "c-1"}
    turn = plan_turn((user("Hi"), assistant("Hello!"), user("And?")), held)
    assert (turn.message, turn.session_id, turn.conversation_uuid) == ("And?", "s-1", "c-1")
    assert turn.continued


def test_the_last_message_must_be_the_users() -> None:
    with pytest.raises(InvalidMessagesError, match=r"messages\[1\]"):
        plan_turn((user("Hi"), assistant("Hello")), None)


# --- the mapping, through the real stages ---------------------------------------------------


def make_call(messages: tuple[Message, ...], store: ConversationStore, history: str) -> Call:
    return Call(
        request_id="t",
        model="gpt-4o",
        messages=messages,
        settings=Settings(
            site=Site.at("http://127.0.0.1:8080"),
            history=history,  # type: ignore[arg-type]
        ),
        session=None,  # type: ignore[arg-type]  # no stage here does I/O
        conversations=store,
    )


def answer_body(text: str, outcome: str) -> MemoryBody:
    """The step-2 stream: a ``complete`` answer, one ``cut`` off, or ``refused`` by the site
    before its model ran (a validation error, then ``done``)."""
    events = [
        'event: message_start\ndata: {"message_id":"m"}',
        'data: {"delta":' + json.dumps(text) + "}",
    ]
    if outcome == "complete":
        events.append('event: done\ndata: {"finished":true}')
    elif outcome == "refused":
        events = [
            'event: error\ndata: {"error":"Security check failed. Please refresh the page."}',
            'event: done\ndata: {"finished":true}',
        ]
    return MemoryBody(["".join(e + "\n\n" for e in events).encode()])


async def converse(
    messages: tuple[Message, ...],
    store: ConversationStore,
    answer: str,
    *,
    outcome: str = "complete",
    history: str = "messages",
) -> tuple[dict[str, str], dict[str, str]]:
    """One call through the payload and decode stages; its step-1 form and step-2 query."""
    exchange = Exchange(call=make_call(messages, store, history), dialect="aipkit", tokens=TOKENS)
    exchange = await BuildAipkitPayload()(exchange)
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/event-stream"}))
    reply = Reply(
        url=TOKENS.ajax_url,
        status=200,
        headers=headers,
        body=answer_body(answer, outcome),
    )
    try:
        decoded = await DecodeAipkitStream()(attrs.evolve(exchange, reply=reply))
        assert decoded.text is not None
        async for _chunk in decoded.text:
            pass
    except ChatGpttError:  # the caller got an error
        assert outcome != "complete"
    return dict(exchange.form or ()), dict(exchange.query or ())


async def test_a_three_turn_conversation_stays_one_server_conversation() -> None:
    store = ConversationStore()
    one = (user("Hello"),)
    form1, query1 = await converse(one, store, "Hi!")
    two = (*one, assistant("Hi!"), user("And now?"))
    form2, query2 = await converse(two, store, "Now this.")
    three = (*two, assistant("Now this."), user("Bye"))
    form3, query3 = await converse(three, store, "Bye!")
    assert [form1["message"], form2["message"], form3["message"]] == ["Hello", "And now?", "Bye"]
    ids = {(q["session_id"], q["conversation_uuid"]) for q in (query1, query2, query3)}
    assert len(ids) == 1


async def test_an_answer_the_caller_changed_starts_a_new_folded_conversation() -> None:
    store = ConversationStore()
    _form, first = await converse((user("Hello"),), store, "Hi!")
    edited = (user("Hello"), assistant("Hi! (edited)"), user("And now?"))
    form, query = await converse(edited, store, "x")
    assert form["message"] == flatten_prompt(edited)
    assert query["conversation_uuid"] != first["conversation_uuid"]


async def test_history_flatten_always_folds() -> None:
    store = ConversationStore()
    await converse((user("Hello"),), store, "Hi!", history="flatten")
    follow = (user("Hello"), assistant("Hi!"), user("And now?"))
    form, _query = await converse(follow, store, "x", history="flatten")
    assert form["message"] == flatten_prompt(follow)


texts = st.sampled_from(["Hello", "Hi!", "And now?", "Why?", "Because.", "ok", "ok "])


@settings(deadline=None, max_examples=120)
@given(data=st.data())
def test_a_conversation_is_continued_exactly_when_the_history_extends_a_held_one(
    data: st.DataObject,
) -> None:
    """Calls that extend earlier conversations, exactly or altered, or start new ones, some
    answers cut short, some refused before the site's model ran: the server conversation
    is continued (same ids, only the new message) exactly when the earlier turns are a
    conversation completed and not moved since (a refusal does not move it)."""
    store = ConversationStore()
    completed: list[tuple[Message, ...]] = []  # every conversation the caller saw complete
    held: dict[tuple[Message, ...], tuple[str, str]] = {}  # what the server holds, by turns
    for _ in range(data.draw(st.integers(1, 8), label="calls")):
        base: tuple[Message, ...] = ()
        if completed and data.draw(st.booleans(), label="extend"):
            base = data.draw(st.sampled_from(completed), label="base")
            alter = data.draw(st.sampled_from(["none", "answer", "drop", "system"]), label="alter")
            if alter == "answer":
                base = (*base[:-1], assistant(base[-1].content + "!"))
            elif alter == "drop":
                base = base[1:]
            elif alter == "system":
                base = (Message("system", "Be brief."), *base)
        messages = (*base, user(data.draw(texts, label="question")))
        answer = data.draw(texts, label="answer")
        outcome = data.draw(st.sampled_from(["complete", "cut", "refused"]), label="outcome")
        expected = held.pop(base, None) if base else None
        form, query = asyncio.run(converse(messages, store, answer, outcome=outcome))
        ids = (query["session_id"], query["conversation_uuid"])
        if expected is not None:
            assert ids == expected
            assert form["message"] == messages[-1].content
        else:
            assert ids not in held.values(), "a new conversation gets new ids"
            assert form["message"] == flatten_prompt(messages)
        if outcome == "complete":
            conversation = (*messages, assistant(answer))
            completed.append(conversation)
            held[conversation] = ids
        elif outcome == "refused" and expected is not None:
            held[base] = expected  # refused before the server logged it: still held


async def test_a_refusal_before_the_model_gives_the_conversation_back() -> None:
    """A rejected nonce (the site's model never ran): the retry continues the conversation."""
    store = ConversationStore()
    _form, first = await converse((user("Hello"),), store, "Hi!")
    follow = (user("Hello"), assistant("Hi!"), user("And now?"))
    _form, refused = await converse(follow, store, "", outcome="refused")
    form, retried = await converse(follow, store, "Now.")
    assert refused == retried == first
    assert form["message"] == "And now?"


async def test_a_cut_answer_does_not_give_the_conversation_back() -> None:
    """Cut after the site logged the message: continuing would repeat it to the model."""
    store = ConversationStore()
    _form, first = await converse((user("Hello"),), store, "Hi!")
    follow = (user("Hello"), assistant("Hi!"), user("And now?"))
    await converse(follow, store, "No", outcome="cut")
    form, retried = await converse(follow, store, "Now.")
    assert retried["conversation_uuid"] != first["conversation_uuid"]
    assert form["message"] == flatten_prompt(follow)
