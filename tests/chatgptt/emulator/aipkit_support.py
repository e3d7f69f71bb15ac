"""A small raw client of an AIPKit site for the emulator's tests: page, nonce, step 1, step 2."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs

from chatgptt.emulator import EmulatorServer

AJAX = "/wp-admin/admin-ajax.php"
SESSION = "3f0c1a2b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
CONVERSATION = "9b1e2d3c-4b5a-4697-8a1b-2c3d4e5f6a7b"
PADDING = b":" + b" " * 4096 + b"\n\n"


@attrs.frozen
class Event:
    """One SSE frame: its ``event`` name (``None`` for plain data), ``id`` and ``data``."""

    name: str | None
    id: str | None
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def parse_events(body: bytes) -> list[Event]:
    """The frames of a stream body (after the padding comment)."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block or block.startswith(":"):
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            fields[key] = value
        events.append(Event(fields.get("event"), fields.get("id"), fields["data"]))
    return events


def summary(events: list[Event]) -> list[str]:
    """A stream as a list of event names, ``delta`` for text pieces."""
    return [event.name or ("delta" if "delta" in event.json else "data") for event in events]


def text_of(events: list[Event]) -> str:
    return "".join(event.json["delta"] for event in events if event.name is None)


class Guest:
    """A browser guest of one AIPKit site: its ids, and the site's page tokens."""

    def __init__(
        self,
        site: EmulatorServer,
        client: aiohttp.ClientSession,
        *,
        session_id: str = SESSION,
        conversation_uuid: str = CONVERSATION,
    ) -> None:
        self.site = site
        self.client = client
        self.session_id = session_id
        self.conversation_uuid = conversation_uuid
        self.config: dict[str, Any] = {}

    @property
    def ajax(self) -> str:
        return self.site.url + AJAX

    @property
    def nonce(self) -> str:
        return str(self.config["nonce"])

    @property
    def bot_id(self) -> str:
        return str(self.config["botId"])

    async def load_page(self, path: str = "/") -> dict[str, Any]:
        async with self.client.get(self.site.url + path) as response:
            text = await response.text()
        found = re.search(r"data-config='([^']*)'", text)
        assert found is not None, "no data-config on the page"
        self.config = json.loads(html.unescape(found.group(1)))
        return self.config

    async def cache(
        self,
        message: str | None = "Hello",
        *,
        headers: Mapping[str, str] | None = None,
        **fields: str,
    ) -> tuple[int, dict[str, Any]]:
        form = {"action": "aipkit_cache_sse_message", "_ajax_nonce": self.nonce}
        form["bot_id"] = self.bot_id
        if message is not None:
            form["message"] = message
        form.update(fields)
        async with self.client.post(self.ajax, data=form, headers=headers or {}) as response:
            body = await response.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"not_json": body.decode(errors="replace")}
        return response.status, payload

    async def key(self, message: str = "Hello") -> str:
        status, payload = await self.cache(message)
        assert status == 200, payload
        return str(payload["data"]["cache_key"])

    def stream_query(self, key: str | None, **changes: str | None) -> dict[str, str]:
        query: dict[str, str | None] = {
            "action": "aipkit_frontend_chat_stream",
            "cache_key": key,
            "bot_id": self.bot_id,
            "session_id": self.session_id,
            "conversation_uuid": self.conversation_uuid,
            "post_id": str(self.config.get("postId", 0)),
            "_ts": "1700000000000",
            "_ajax_nonce": self.nonce,
        }
        query.update(changes)
        return {k: v for k, v in query.items() if v is not None}

    async def stream(
        self,
        key: str | None,
        *,
        headers: Mapping[str, str] | None = None,
        **changes: str | None,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.client.get(
            self.ajax, params=self.stream_query(key, **changes), headers=headers or {}
        ) as response:
            return response, await response.read()

    async def events(self, key: str | None, **changes: str | None) -> list[Event]:
        response, body = await self.stream(key, **changes)
        assert response.status == 200
        assert body.startswith(PADDING)
        return parse_events(body)

    async def say(self, message: str, **changes: str | None) -> list[Event]:
        """Steps 1 and 2 for ``message`` in this guest's conversation."""
        return await self.events(await self.key(message), **changes)
