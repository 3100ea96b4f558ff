"""A local stand-in for Slack: the Web API's chat.postMessage, chat.update,
conversations.history and conversations.replies, and an incoming webhook, on 127.0.0.1 and a
random port, driven by the real slack_sdk clients.

Answers the way Slack does (HTTP 200 with ``{"ok": false, "error": ...}`` for API errors; text
bodies such as ``ok`` / ``invalid_payload`` from webhooks), checks the bearer token, keeps every
channel's messages (text, blocks, message metadata, threads, broadcast replies) so replies must
name a real thread, updates must name a real message and history reads back what was posted,
refuses payloads that break Block Kit's limits, records every request, and can be scripted to
answer 429 + Retry-After, 5xx or any error for the next calls, or to take a message and hold
its answer (a daemon killed mid-request). Reusable by any test (and by the e2e daemon tests).
"""

from __future__ import annotations

import itertools
import json
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl

import anyio
from aiohttp import web

Kind = Literal["api", "webhook"]

TOKEN = "xoxb-test-token"
WEBHOOK_PATH = "/services/T0000TEST/B0000TEST/abcdefghijklmnopqrstuvwx"


@dataclass(frozen=True)
class Reply:
    """A scripted answer: HTTP status, a JSON body (Web API) or a text body (webhook)."""

    status: int = 200
    json: Mapping[str, Any] | None = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # Post the message, then never answer (until `FakeSlack.release()`): the request reached
    # Slack, the answer did not reach the caller.
    hold: bool = False

    @classmethod
    def error(cls, error: str) -> Reply:
        """A Web API error the way Slack sends it: HTTP 200, ok false."""
        return cls(json={"ok": False, "error": error})

    @classmethod
    def rate_limited(cls, retry_after: int = 1, kind: Kind = "api") -> Reply:
        if kind == "webhook":
            return cls(429, text="rate_limited", headers={"Retry-After": str(retry_after)})
        return cls(
            429,
            json={"ok": False, "error": "ratelimited"},
            headers={"Retry-After": str(retry_after)},
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Reply:
        return cls(
            status, text="<html>upstream trouble</html>", headers={"Content-Type": "text/html"}
        )


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    kind: Kind
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    status: int
    answer: Mapping[str, Any] | str
    at: float  # time.monotonic() on arrival

    @property
    def ok(self) -> bool:
        if self.kind == "webhook":
            return self.status == 200
        return (
            self.status == 200 and isinstance(self.answer, Mapping) and bool(self.answer.get("ok"))
        )

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.body.get("blocks") or []
        return list(blocks)

    @property
    def thread_ts(self) -> str | None:
        value = self.body.get("thread_ts")
        return str(value) if value else None

    @property
    def ts(self) -> str | None:
        return (
            str(self.answer.get("ts"))
            if isinstance(self.answer, Mapping) and self.answer.get("ts")
            else None
        )

    @property
    def channel(self) -> str | None:
        if isinstance(self.answer, Mapping) and self.answer.get("channel"):
            return str(self.answer["channel"])
        value = self.body.get("channel")
        return str(value) if value else None

    @property
    def method(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def dedup_token(self) -> str | None:
        meta = self.body.get("metadata")
        payload = meta.get("event_payload") if isinstance(meta, Mapping) else None
        value = payload.get("dedup_key") if isinstance(payload, Mapping) else None
        return str(value) if value else None

    def everything(self) -> str:
        """The whole payload as JSON text, for asserting what does or does not appear."""
        return json.dumps(self.body, ensure_ascii=False)


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def block_kit_problem(blocks: Any) -> str | None:
    """The first Block Kit limit the blocks break, or None. A subset of Slack's checks: the
    ones our messages could plausibly hit."""
    if not isinstance(blocks, list):
        return "blocks is not a list"
    if len(blocks) > 50:
        return f"{len(blocks)} blocks (max 50)"
    for i, block in enumerate(blocks):
        kind = block.get("type")
        text = block.get("text")
        if kind == "header":
            if not text or text.get("type") != "plain_text" or _units(text["text"]) > 150:
                return f"block {i}: header must be plain_text of at most 150"
        elif kind == "section":
            if text is not None and _units(text.get("text", "")) > 3000:
                return f"block {i}: section text over 3000"
            fields = block.get("fields") or []
            if len(fields) > 10 or any(_units(f.get("text", "")) > 2000 for f in fields):
                return f"block {i}: too many or too long fields"
            if text is None and not fields:
                return f"block {i}: section without text or fields"
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 25:
                return f"block {i}: actions needs 1..25 elements"
            for element in elements:
                if _units(element.get("text", {}).get("text", "")) > 75:
                    return f"block {i}: button text over 75"
                if len(element.get("url", "")) > 3000:
                    return f"block {i}: button url over 3000"
        elif kind == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 10:
                return f"block {i}: context needs 1..10 elements"
        else:
            return f"block {i}: unexpected type {kind!r}"
    return None


class FakeSlack:
    """The server. Use as ``async with FakeSlack() as slack:``; see the module docstring."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[Request] = []
        self._scripts: dict[Kind, deque[Reply]] = {"api": deque(), "webhook": deque()}
        # While set, every call of either kind gets this answer (an outage), script or not.
        self.outage: Reply | None = None
        # Channels that answer channel_not_found / not_in_channel, by name or id.
        self.missing_channels: set[str] = set()
        self.outside_channels: set[str] = set()
        self._threads: set[tuple[str, str]] = set()
        # channel id -> its messages in posting order, replies included (with thread_ts).
        self.channels: dict[str, list[dict[str, Any]]] = {}
        # Scopes the token has; without channels:history, history reads answer missing_scope.
        self.scopes: set[str] = {"chat:write", "channels:history", "groups:history"}
        # Message ts that can no longer be edited (chat.update answers cant_update_message).
        self.frozen: set[str] = set()
        self._released = anyio.Event()
        self._ts = itertools.count(1)
        self._changed = anyio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/chat.update", self._update)
        for method in ("conversations.history", "conversations.replies"):
            app.router.add_get(f"/api/{method}", self._read)
            app.router.add_post(f"/api/{method}", self._read)
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    # --- scripting and inspection ---------------------------------------------------------

    def script(self, *replies: Reply, kind: Kind = "api") -> None:
        """Answer the next calls of `kind` with `replies`, in order; then normally again."""
        self._scripts[kind].extend(replies)

    def channel_id(self, channel: str) -> str:
        """The id Slack would answer for a channel name (ids pass through)."""
        name = channel.lstrip("#")
        if name.startswith(("C", "G")) and name.isupper():
            return name
        return "C" + format(zlib.crc32(name.encode()), "08X")

    def release(self) -> None:
        """Answer the held requests (see `Reply.hold`)."""
        self._released.set()

    @property
    def delivered(self) -> list[Request]:
        """Requests that posted a message, in order."""
        return [
            r
            for r in self.requests
            if r.ok and (r.kind == "webhook" or r.method == "chat.postMessage")
        ]

    @property
    def updates(self) -> list[Request]:
        """chat.update requests that changed a message, in order."""
        return [r for r in self.requests if r.ok and r.method == "chat.update"]

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        """The messages a reader sees in the channel itself, as they stand now (updates
        applied): top-level ones and thread replies broadcast to the channel."""
        return [
            m
            for m in self.channels.get(self.channel_id(channel), [])
            if "thread_ts" not in m or m.get("subtype") == "thread_broadcast"
        ]

    def replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The replies in a message's thread, oldest first."""
        return [
            m
            for m in self.channels.get(self.channel_id(channel), [])
            if m.get("thread_ts") == ts and m["ts"] != ts
        ]

    def delivered_to(self, channel: str) -> list[Request]:
        wanted = self.channel_id(channel)
        return [r for r in self.delivered if r.channel == wanted]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Wait until `count` messages were delivered; return them."""
        with anyio.fail_after(timeout):
            while len(self.delivered) < count:
                changed = self._changed
                await changed.wait()
        return self.delivered

    async def wait_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Wait until `count` requests arrived, whatever their answer."""
        with anyio.fail_after(timeout):
            while len(self.requests) < count:
                changed = self._changed
                await changed.wait()
        return self.requests

    def _record(self, request: Request) -> None:
        self.requests.append(request)
        self._changed.set()
        self._changed = anyio.Event()

    # --- handlers -----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if request.content_type == "application/json":
            data = json.loads(raw or b"{}")
            return dict(data) if isinstance(data, dict) else {}
        form: dict[str, Any] = dict(parse_qsl(raw.decode()))
        form.update(request.query)
        for name in ("blocks", "attachments", "metadata"):
            if isinstance(form.get(name), str):
                form[name] = json.loads(form[name])
        return form

    def _next_scripted(self, kind: Kind) -> Reply | None:
        if self.outage is not None:
            return self.outage
        script = self._scripts[kind]
        return script.popleft() if script else None

    async def _post_message(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        scripted = self._next_scripted("api")
        if scripted is not None and scripted.hold:
            held = self._answer(request, body)
            self._record(self._request("api", request, body, 200, held))
            await self._released.wait()
            return web.json_response(held)
        if scripted is not None:
            if scripted.delay:
                await anyio.sleep(scripted.delay)
            answer: Mapping[str, Any] | str
            if scripted.json is not None or scripted.text is None:
                data = dict(scripted.json or {"ok": True})
                # A scripted success (e.g. a slow one) still posts a real message.
                answer = self._accept(body) if data.get("ok") else data
                response = web.json_response(
                    answer, status=scripted.status, headers=scripted.headers
                )
            else:
                answer = scripted.text
                response = web.Response(
                    status=scripted.status,
                    body=scripted.text.encode(),
                    headers=scripted.headers,
                )
            self._record(self._request("api", request, body, scripted.status, answer))
            return response
        answer = self._answer(request, body)
        self._record(self._request("api", request, body, 200, answer))
        return web.json_response(answer)

    def _auth_error(self, request: web.Request) -> dict[str, Any] | None:
        auth = request.headers.get("Authorization", "")
        if not auth:
            return {"ok": False, "error": "not_authed"}
        if auth != f"Bearer {self.token}":
            return {"ok": False, "error": "invalid_auth"}
        return None

    def _answer(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        refused = self._auth_error(request)
        if refused is not None:
            return refused
        channel = str(body.get("channel") or "")
        if not channel or channel in self.missing_channels:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.outside_channels:
            return {"ok": False, "error": "not_in_channel"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if "blocks" in body and block_kit_problem(body["blocks"]) is not None:
            return {"ok": False, "error": "invalid_blocks"}
        thread = body.get("thread_ts")
        if thread and (self.channel_id(channel), str(thread)) not in self._threads:
            return {"ok": False, "error": "thread_not_found"}
        return self._accept(body)

    def _accept(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel_id(str(body.get("channel") or "general"))
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        self._threads.add((channel, ts))
        message: dict[str, Any] = {"type": "message", "text": body.get("text", ""), "ts": ts}
        if body.get("blocks"):
            message["blocks"] = body["blocks"]
        if isinstance(body.get("metadata"), Mapping):
            message["metadata"] = dict(body["metadata"])
        if body.get("thread_ts"):
            message["thread_ts"] = str(body["thread_ts"])
            if body.get("reply_broadcast") in (True, "true", "1"):
                message["subtype"] = "thread_broadcast"
        self.channels.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": dict(message)}

    async def _update(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        scripted = self._next_scripted("api")
        if scripted is not None and (scripted.json is None or not scripted.json.get("ok")):
            answer: Mapping[str, Any] | str = dict(scripted.json or {}) or (scripted.text or "")
            self._record(self._request("api", request, body, scripted.status, answer))
            if isinstance(answer, str):
                return web.Response(status=scripted.status, text=answer, headers=scripted.headers)
            return web.json_response(answer, status=scripted.status, headers=scripted.headers)
        result = self._apply_update(request, body)
        self._record(self._request("api", request, body, 200, result))
        return web.json_response(result)

    def _apply_update(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        refused = self._auth_error(request)
        if refused is not None:
            return refused
        # chat.update takes a channel id only, as Slack's does.
        channel, ts = str(body.get("channel") or ""), str(body.get("ts") or "")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        message = next((m for m in self.channels[channel] if m["ts"] == ts), None)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if ts in self.frozen:
            return {"ok": False, "error": "cant_update_message"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if "blocks" in body and block_kit_problem(body["blocks"]) is not None:
            return {"ok": False, "error": "invalid_blocks"}
        message["text"] = body.get("text", "")
        if "blocks" in body:
            message["blocks"] = body["blocks"]
        message["edited"] = {"ts": f"{int(time.time())}.{next(self._ts):06d}"}
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}

    async def _read(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        answer = self._history(request, body)
        self._record(self._request("api", request, body, 200, answer))
        return web.json_response(answer)

    def _history(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        refused = self._auth_error(request)
        if refused is not None:
            return refused
        if "channels:history" not in self.scopes:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": "channels:history",
                "provided": ",".join(sorted(self.scopes)),
            }
        channel = str(body.get("channel") or "")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        with_metadata = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        if request.path.endswith("conversations.replies"):
            parent = str(body.get("ts") or "")
            found = [m for m in self.channels[channel] if parent in (m["ts"], m.get("thread_ts"))]
            if not found:
                return {"ok": False, "error": "thread_not_found"}
        else:
            oldest = float(body.get("oldest") or 0)
            found = [
                m
                for m in reversed(self.channels[channel])  # newest first, as Slack answers
                if float(m["ts"]) > oldest
                and ("thread_ts" not in m or m.get("subtype") == "thread_broadcast")
            ]
        limit = int(body.get("limit") or 100)
        start = int(body.get("cursor") or 0)
        page = found[start : start + limit]
        more = start + limit < len(found)
        messages = [{k: v for k, v in m.items() if with_metadata or k != "metadata"} for m in page]
        return {
            "ok": True,
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        scripted = self._next_scripted("webhook")
        if scripted is not None:
            if scripted.delay:
                await anyio.sleep(scripted.delay)
            text = scripted.text if scripted.text is not None else "ok"
            self._record(self._request("webhook", request, body, scripted.status, text))
            return web.Response(
                status=scripted.status,
                text=text,
                headers={"Content-Type": "text/plain", **scripted.headers},
            )
        status, text = 200, "ok"
        if not body.get("text") and not body.get("blocks"):
            status, text = 400, "no_text"
        elif "blocks" in body and block_kit_problem(body["blocks"]) is not None:
            status, text = 400, "invalid_blocks"
        self._record(self._request("webhook", request, body, status, text))
        return web.Response(status=status, text=text, content_type="text/plain")

    def _request(
        self,
        kind: Kind,
        request: web.Request,
        body: dict[str, Any],
        status: int,
        answer: Mapping[str, Any] | str,
    ) -> Request:
        return Request(
            kind=kind,
            path=request.path,
            headers=dict(request.headers),
            body=body,
            status=status,
            answer=answer,
            at=time.monotonic(),
        )
