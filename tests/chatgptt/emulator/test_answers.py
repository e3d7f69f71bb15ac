"""The plugin's decisions, without a server: what each AJAX request gets."""

from __future__ import annotations

import attrs

from chatgptt.emulator import EmulatorConfig, EmulatorState, Fault
from chatgptt.emulator.answers import AjaxRequest, answer_ajax


def ask(state: EmulatorState, fault: Fault | None = None, **form: str) -> tuple[int, bytes]:
    fields = {"action": "wpaicg_chat_shortcode_message", "_wpnonce": state.nonce} | form
    reply = answer_ajax(state, AjaxRequest(query={}, form=fields), fault)
    return reply.status, reply.body


def test_order_of_checks() -> None:
    """Action first, then nonce, then message, then history."""
    state = EmulatorState(EmulatorConfig(mode="json"))
    bad_history = '[{"role": "user", "content": "x"}]'
    assert ask(state, action="", _wpnonce="bad", message="")[0] == 400
    assert ask(state, _wpnonce="bad", message="", wpaicg_chat_history=bad_history)[0] == 403
    assert b"nothing was inputted" in ask(state, message="0", wpaicg_chat_history=bad_history)[1]
    assert ask(state, message="hi", wpaicg_chat_history=bad_history)[0] == 500
    assert ask(state, message="hi")[0] == 200
    assert list(state.received) == [
        [{"role": "user", "content": state.config.greeting}, {"role": "user", "content": "hi"}]
    ]


def test_referer_link_is_used_as_given() -> None:
    state = EmulatorState()
    fields = {"action": "wpaicg_chatbox_message", "_wpnonce": "x"}
    reply = answer_ajax(
        state, AjaxRequest(query={}, form=fields, referer=lambda: "http://h/?a=1&#038;b")
    )
    assert reply.body.endswith(b'<a href="http://h/?a=1&#038;b">Please try again.</a>')


def test_upstream_error_is_seen_twice_only_when_streaming() -> None:
    state = EmulatorState()
    ask(state, message="UPSTREAM_ERROR")
    assert len(state.received) == 2
    state.config = attrs.evolve(state.config, mode="json")
    ask(state, message="UPSTREAM_ERROR")
    assert len(state.received) == 3


def test_token_limit_stops_before_the_model() -> None:
    state = EmulatorState()
    status, body = ask(state, Fault(kind="control", flag="tokenLimitReached"), message="hi")
    assert (status, body) == (
        200,
        b'data: {"msg":"You have reached your token limit.","tokenLimitReached":true}\n\n',
    )
    assert list(state.received) == []
