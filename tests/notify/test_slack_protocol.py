"""The notifiers against Slack's published protocol, not against our own stand-in's habits.

`DocSlack` is written from Slack's reference pages alone (chat.postMessage, incoming webhooks
and their error strings, rate limits, Block Kit limits): a Web API that wants a bearer token
and answers HTTP 200 with ``ok: false`` for its errors, ids channels (``#deploys`` -> an id like
``C0DEPLOYS``), threads by that id, answers 429 with Retry-After; a webhook that answers ``ok``,
or a status and a bare error string. Faults a proxy in front of Slack could add (a 502 page
labelled JSON, a 200 that is not JSON) are scripted too. The real slack_sdk clients talk to it
through our notifiers and the dispatcher.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
import pytest
import structlog.testing
from aiohttp import web

from monitor.model import FAILED
from monitor.notify.base import Delivered, Destination, Rejected, Retry, SendResult, Single
from monitor.notify.slack import SlackBotNotifier
from monitor.notify.webhook import SlackWebhookNotifier

from .conftest import OpenStore
from .harness import dispatcher_for, eventually, running, save, settle
from .helpers import FakeClock, RecordingObserver, make_alert, make_recovery, slack_settings

TOKEN = "xoxb-1111-2222-protocolsecret"
HOOK_PATH = "/services/T0DOC/B0DOC/hooksecret0123456789abcd"
HOSTILE = "<!channel> <@U123> <https://evil.example|docs> & co"


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def block_kit_errors(blocks: Any) -> list[str]:
    """Block Kit's documented limits (blocks reference, text object, button element)."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    errors = [] if len(blocks) <= 50 else ["more than 50 blocks"]

    def text_object(obj: Any, limit: int, where: str, plain_only: bool = False) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
            errors.append(f"{where}: not a text object")
            return
        if plain_only and obj["type"] != "plain_text":
            errors.append(f"{where}: must be plain_text")
        if "verbatim" in obj and obj["type"] != "mrkdwn":
            errors.append(f"{where}: verbatim is for mrkdwn only")
        if "emoji" in obj and obj["type"] != "plain_text":
            errors.append(f"{where}: emoji is for plain_text only")
        if not 1 <= _units(str(obj.get("text", ""))) <= limit:
            errors.append(f"{where}: text length outside 1..{limit}")

    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            text_object(block.get("text"), 150, f"header {i}", plain_only=True)
        elif kind == "section":
            if "text" in block:
                text_object(block["text"], 3000, f"section {i}")
            fields = block.get("fields", [])
            if len(fields) > 10:
                errors.append(f"section {i}: more than 10 fields")
            for f in fields:
                text_object(f, 2000, f"section {i} field")
            if "text" not in block and not fields:
                errors.append(f"section {i}: needs text or fields")
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25:
                errors.append(f"actions {i}: 1..25 elements")
            ids = [e.get("action_id") for e in elements if e.get("action_id")]
            if len(ids) != len(set(ids)):
                errors.append(f"actions {i}: action_id not unique")
            for e in elements:
                text_object(e.get("text"), 75, f"button in {i}", plain_only=True)
                if len(e.get("url", "")) > 3000 or len(e.get("action_id", "")) > 255:
                    errors.append(f"button in {i}: url or action_id too long")
                if e.get("style") not in (None, "primary", "danger"):
                    errors.append(f"button in {i}: bad style")
        elif kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10:
                errors.append(f"context {i}: 1..10 elements")
            for e in elements:
                text_object(e, 3000, f"context {i}")
        else:
            errors.append(f"block {i}: unknown type {kind!r}")
    return errors


@dataclass(frozen=True)
class Raw:
    """A scripted answer, byte for byte."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def api(cls, error: str) -> Raw:
        return cls(200, json.dumps({"ok": False, "error": error}).encode())

    @classmethod
    def hook(cls, status: int, error: str, **headers: str) -> Raw:
        return cls(status, error.encode(), "text/plain", headers)


@dataclass
class Seen:
    kind: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    status: int
    answer: Any


class DocSlack:
    """Slack's Web API (chat.postMessage, chat.update, conversations.history and .replies) and
    an incoming webhook, as documented."""

    # Names resolve to ids; answers always carry the id.
    CHANNELS: ClassVar[dict[str, str]] = {"#deploys": "C0DEPLOYS", "deploys": "C0DEPLOYS"}

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: dict[str, deque[Raw]] = {"api": deque(), "hook": deque(), "history": deque()}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        # Granted scopes: history methods need channels:history (public channels).
        self.scopes = {"chat:write", "channels:history"}
        # Messages past the workspace's edit window: chat.update answers edit_window_closed.
        self.closed: set[str] = set()
        self._ts = itertools.count(100)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> DocSlack:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/chat.update", self._update)
        app.router.add_route("*", "/api/conversations.history", self._history)
        app.router.add_route("*", "/api/conversations.replies", self._history)
        app.router.add_post(HOOK_PATH, self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    @property
    def posted(self) -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.kind in ("api", "hook") and s.status == 200 and s.answer not in (None, "")
        ]

    def calls(self, kind: str) -> list[Seen]:
        return [s for s in self.seen if s.kind == kind]

    def _authorized(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        auth = headers.get("Authorization", "")
        if not auth:
            return {"ok": False, "error": "not_authed"}
        if auth != f"Bearer {TOKEN}":
            return {"ok": False, "error": "invalid_auth"}
        return None

    async def _update(self, request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        body = (
            json.loads(await request.read())
            if request.content_type == "application/json"
            else dict((await request.post()).items())
        )
        scripted = await self._scripted("api", headers, body)
        if scripted is not None:
            return scripted
        answer = self._authorized(headers) or self._apply_update(body)
        self.seen.append(Seen("update", headers, body, 200, answer))
        return web.json_response(answer)

    def _apply_update(self, body: dict[str, Any]) -> dict[str, Any]:
        # "channel: Channel containing the message to be updated. For direct messages, ensure
        # that this value is a DM ID" -- an id; a name is channel_not_found.
        channel, ts = str(body.get("channel", "")), str(body.get("ts", ""))
        if not channel.startswith("C"):
            return {"ok": False, "error": "channel_not_found"}
        message = self.messages.get((channel, ts))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if ts in self.closed:
            return {"ok": False, "error": "edit_window_closed"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if body.get("blocks") is not None and block_kit_errors(body["blocks"]):
            return {"ok": False, "error": "invalid_blocks"}
        message["text"] = body.get("text", "")
        message["blocks"] = body.get("blocks")
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}

    async def _history(self, request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        body: dict[str, Any] = dict(request.query)
        if request.method == "POST":
            body.update((await request.post()).items())
        scripted = await self._scripted("history", headers, body)
        if scripted is not None:
            return scripted
        answer = self._authorized(headers) or self._read(request.path, body)
        self.seen.append(Seen("history", headers, body, 200, answer))
        return web.json_response(answer)

    def _read(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if "channels:history" not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": "channels:history"}
        channel = str(body.get("channel", ""))
        if not channel.startswith("C"):
            return {"ok": False, "error": "channel_not_found"}
        metadata = str(body.get("include_all_metadata", "")).lower() in ("true", "1")
        mine = [m for (c, _), m in sorted(self.messages.items()) if c == channel]
        if path.endswith("replies"):
            parent = str(body.get("ts", ""))
            found = [m for m in mine if parent in (m["ts"], m.get("thread_ts"))]
        else:
            oldest = float(body.get("oldest") or 0)
            found = [
                m
                for m in reversed(mine)
                if float(m["ts"]) > oldest
                and (
                    m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
                )
            ]
        shown = [{k: v for k, v in m.items() if k != "metadata" or metadata} for m in found]
        return {"ok": True, "messages": shown, "has_more": False}

    async def _scripted(
        self, kind: str, headers: Mapping[str, str], body: dict[str, Any]
    ) -> web.Response | None:
        if not self.script[kind]:
            return None
        raw = self.script[kind].popleft()
        self.seen.append(Seen(kind, headers, body, raw.status, None))
        await anyio.sleep(raw.delay)
        return web.Response(
            status=raw.status,
            body=raw.body,
            headers={"Content-Type": raw.content_type, **raw.headers},
        )

    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        raw = await request.read()
        if request.content_type == "application/json":
            body = json.loads(raw)
        else:
            body = dict((await request.post()).items())
        scripted = await self._scripted("api", headers, body)
        if scripted is not None:
            return scripted
        answer = self._answer(headers, request.content_type, body)
        self.seen.append(Seen("api", headers, body, 200, answer if answer["ok"] else None))
        return web.json_response(answer)

    def _answer(
        self, headers: Mapping[str, str], content_type: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        auth = headers.get("Authorization", "")
        if not auth and "token" not in body:
            return {"ok": False, "error": "not_authed"}
        # A JSON body carries no token: it must come in the Authorization header.
        if auth != f"Bearer {TOKEN}":
            return {"ok": False, "error": "invalid_auth"}
        channel = self.CHANNELS.get(str(body.get("channel", "")), str(body.get("channel", "")))
        if not channel.startswith("C"):
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if body.get("blocks") is not None and block_kit_errors(body["blocks"]):
            return {"ok": False, "error": "invalid_blocks"}
        thread = body.get("thread_ts")
        if thread is not None and (channel, thread) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        message = {"type": "message", "subtype": "bot_message", "text": body["text"], "ts": ts}
        if thread is not None:
            message["thread_ts"] = thread
            if body.get("reply_broadcast") is True:
                message["subtype"] = "thread_broadcast"
        if isinstance(body.get("metadata"), dict):
            message["metadata"] = body["metadata"]
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.seen.append(Seen("hook", headers, {}, 400, None))
            return web.Response(status=400, text="invalid_payload")
        scripted = await self._scripted("hook", headers, body)
        if scripted is not None:
            return scripted
        if not body.get("text") and not body.get("blocks"):
            status, text = 400, "missing_text_or_fallback_or_attachments"
        elif body.get("blocks") is not None and block_kit_errors(body["blocks"]):
            status, text = 400, "invalid_blocks"
        else:
            status, text = 200, "ok"
        self.seen.append(Seen("hook", headers, body, status, text if status == 200 else None))
        return web.Response(status=status, text=text)


@pytest.fixture
async def doc() -> AsyncIterator[DocSlack]:
    async with DocSlack() as server:
        yield server


def bot(doc: DocSlack, observer: RecordingObserver, token: str = TOKEN) -> SlackBotNotifier:
    return SlackBotNotifier(lambda: token, doc.base_url, observer, timeout=2)


def hook(doc: DocSlack, observer: RecordingObserver) -> SlackWebhookNotifier:
    return SlackWebhookNotifier(doc.hook_url, observer, timeout=2)


def failure(**kw: Any) -> Single:
    return Single(make_alert(**kw), Destination("#deploys"))


def no_secret_in(*things: object) -> None:
    text = json.dumps(things, default=repr)
    assert TOKEN not in text and "hooksecret" not in text


# --- how a message is sent ---------------------------------------------------------------


async def test_post_message_is_json_with_a_bearer_token_and_the_required_fields(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    result = await bot(doc, observer).send(failure())
    assert isinstance(result, Delivered)
    assert result.receipt == f"C0DEPLOYS:{doc.posted[0].answer['ts']}"
    [seen] = doc.seen
    content_type = seen.headers["Content-Type"].replace(" ", "").lower()
    assert content_type == "application/json;charset=utf-8"
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "token" not in seen.body
    assert seen.body["channel"] == "#deploys" and seen.body["text"]
    assert seen.body["unfurl_links"] is False and seen.body["unfurl_media"] is False
    assert "thread_ts" not in seen.body


async def test_recovery_threads_on_the_channel_id_slack_answered_not_the_name(
    doc: DocSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    settings = slack_settings({"token": TOKEN, "channel": "#deploys", "base_url": doc.base_url})
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_alert("42"))
        dispatcher.poke()
        await eventually(lambda: len(doc.posted) == 1)
        await save(store, make_recovery("43", "42"))
        dispatcher.poke()
        await eventually(lambda: len(doc.posted) == 2)
    first, reply = doc.posted
    assert first.body["channel"] == "#deploys"
    assert reply.body["channel"] == "C0DEPLOYS"
    assert reply.body["thread_ts"] == first.answer["ts"]
    assert reply.answer["message"]["thread_ts"] == first.answer["ts"]
    assert await store.pending_count() == 0


async def test_webhook_posts_json_and_takes_ok_as_delivered(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    result = await hook(doc, observer).send(failure())
    assert result == Delivered(None)
    [seen] = doc.seen
    assert seen.headers["Content-Type"].replace(" ", "").lower() == "application/json;charset=utf-8"
    assert seen.body["text"] and seen.body["blocks"]
    assert "channel" not in seen.body and "thread_ts" not in seen.body
    assert seen.answer == "ok"


# --- what Slack answers when it refuses ---------------------------------------------------


@pytest.mark.parametrize(
    "error", ["invalid_auth", "channel_not_found", "not_in_channel", "is_archived"]
)
async def test_web_api_errors_come_as_http_200_and_are_rejected_with_the_code(
    doc: DocSlack, observer: RecordingObserver, error: str
) -> None:
    doc.script["api"].append(Raw.api(error))
    result = await bot(doc, observer).send(failure())
    assert isinstance(result, Rejected) and result.error == error and result.hint
    no_secret_in(result)


@pytest.mark.parametrize(
    "error", ["internal_error", "fatal_error", "service_unavailable", "org_login_required"]
)
async def test_web_api_errors_on_slacks_side_are_retries(
    doc: DocSlack, observer: RecordingObserver, error: str
) -> None:
    doc.script["api"].append(Raw.api(error))
    result = await bot(doc, observer).send(failure())
    assert isinstance(result, Retry) and error in result.error


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Raw.hook(403, "action_prohibited"), "action_prohibited"),
        (Raw.hook(404, "no_service"), "no_service"),
        (Raw.hook(410, "channel_is_archived\n"), "channel_is_archived"),
        (Raw(403, b'{"ok":false,"error":"invalid_token"}'), "invalid_token"),
        (Raw(404, b"<html>not found</html>", "text/html"), "http_404"),
    ],
    ids=["403", "404", "410", "json", "html"],
)
async def test_webhook_errors_are_a_status_and_a_bare_code(
    doc: DocSlack, observer: RecordingObserver, answer: Raw, error: str
) -> None:
    doc.script["hook"].append(answer)
    result = await hook(doc, observer).send(failure())
    assert isinstance(result, Rejected) and result.error == error and result.hint
    assert len(doc.seen) == 1
    no_secret_in(result)


async def test_webhook_invalid_payload_falls_back_to_the_text_alone(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    doc.script["hook"].append(Raw.hook(400, "invalid_payload"))
    assert await hook(doc, observer).send(failure()) == Delivered(None)
    refused, plain = doc.seen
    assert refused.body["blocks"] and "blocks" not in plain.body
    assert "Build failed" in plain.body["text"]


@pytest.mark.parametrize(
    "answer",
    [
        Raw(429, b'{"ok":false,"error":"ratelimited"}', headers={"Retry-After": "30"}),
        Raw(429, b"", headers={"Retry-After": "30"}),
        Raw(429, b"ratelimited", "text/plain", {"retry-after": "30"}),
    ],
    ids=["json", "empty", "text"],
)
async def test_a_429_from_the_web_api_waits_its_retry_after(
    doc: DocSlack, observer: RecordingObserver, answer: Raw
) -> None:
    doc.script["api"].append(answer)
    assert await bot(doc, observer).send(failure()) == Retry("rate_limited", after=30.0)


async def test_a_429_from_a_webhook_waits_its_retry_after(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    doc.script["hook"].append(Raw.hook(429, "rate_limited", **{"Retry-After": "12"}))
    assert await hook(doc, observer).send(failure()) == Retry("rate_limited", after=12.0)


async def test_webhook_rollup_error_is_a_retry(doc: DocSlack, observer: RecordingObserver) -> None:
    doc.script["hook"].append(Raw.hook(500, "rollup_error"))
    result = await hook(doc, observer).send(failure())
    assert isinstance(result, Retry) and "rollup_error" in result.error


@pytest.mark.parametrize(
    "answer",
    [
        Raw(502, b"<html>bad gateway</html>"),  # a proxy's page, labelled JSON
        Raw(200, b"<html>captive portal</html>"),
        Raw(200, b"ok", "text/plain"),
        Raw(200, b""),
    ],
    ids=["502-not-json", "200-not-json", "200-text", "200-empty"],
)
async def test_an_answer_that_is_not_slacks_json_is_a_retry_not_a_crash(
    doc: DocSlack, observer: RecordingObserver, answer: Raw
) -> None:
    doc.script["api"].append(answer)
    result: SendResult = await bot(doc, observer).send(failure())
    assert isinstance(result, Retry)
    no_secret_in(result)


async def test_an_unreadable_answer_keeps_the_alert_and_is_not_reported_as_a_bug(
    doc: DocSlack, open_store: OpenStore, observer: RecordingObserver, clock: FakeClock
) -> None:
    store = await open_store()
    doc.script["api"].append(Raw(502, b"<html>bad gateway</html>"))
    settings = slack_settings({"token": TOKEN, "channel": "#deploys", "base_url": doc.base_url})
    dispatcher = dispatcher_for(settings, store, observer, clock)
    with structlog.testing.capture_logs() as logs:
        async with running(dispatcher):
            await save(store, make_alert())
            dispatcher.poke()
            await eventually(lambda: observer.outcomes("retried") == 1)
            assert await store.pending_count() == 1
            clock.advance(301)  # past the longest transient backoff
            dispatcher.poke()
            await eventually(lambda: len(doc.posted) == 1)
            await settle()
    assert not [e for e in logs if e["event"] in ("notifier_crashed", "slack_delivery_rejected")]
    assert observer.alerts[(FAILED, "sent")] == 1 and len(doc.posted) == 1
    assert await store.pending_count() == 0
    no_secret_in(logs)


async def test_a_slack_that_does_not_answer_in_time_is_a_retry(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    doc.script["api"].append(Raw(200, b'{"ok":true}', delay=3))
    doc.script["hook"].append(Raw(200, b"ok", "text/plain", delay=3))
    for notifier in (bot(doc, observer), hook(doc, observer)):
        result = await notifier.send(failure())
        assert isinstance(result, Retry) and result.error.startswith("connection: ")
        no_secret_in(result)


# --- never lost, never doubled, never leaked ----------------------------------------------


async def test_every_kind_of_refusal_keeps_the_alert_and_no_secret_is_logged(
    doc: DocSlack, open_store: OpenStore, observer: RecordingObserver, clock: FakeClock
) -> None:
    store = await open_store()
    doc.script["hook"].extend(
        [
            Raw.hook(429, "rate_limited", **{"Retry-After": "1"}),
            Raw.hook(500, "rollup_error"),
            Raw.hook(404, "no_service"),
            Raw.hook(403, "action_prohibited"),
            Raw(200, b"ok", "text/plain"),
        ]
    )
    settings = slack_settings({"webhook_url": doc.hook_url})
    dispatcher = dispatcher_for(settings, store, observer, clock)
    with structlog.testing.capture_logs() as logs:
        async with running(dispatcher):
            await save(store, make_alert(message=HOSTILE))
            dispatcher.poke()
            for attempt in range(1, 5):
                await eventually(lambda: len(doc.seen) == attempt)  # noqa: B023
                await settle(0.05)
                assert await store.pending_count() == 1
                clock.advance(1000)
                dispatcher.poke()
            await eventually(lambda: len(doc.seen) == 5)
            await settle()
    assert [s.status for s in doc.seen] == [429, 500, 404, 403, 200]
    assert observer.alerts[(FAILED, "sent")] == 1
    assert await store.pending_count() == 0
    no_secret_in(logs)


async def test_a_429_then_success_posts_exactly_one_message(
    doc: DocSlack, open_store: OpenStore, observer: RecordingObserver, clock: FakeClock
) -> None:
    store = await open_store()
    doc.script["api"].append(Raw(429, b"", headers={"Retry-After": "3"}))
    settings = slack_settings({"token": TOKEN, "channel": "#deploys", "base_url": doc.base_url})
    dispatcher = dispatcher_for(settings, store, observer, clock)
    async with running(dispatcher):
        await save(store, make_alert())
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("retried") == 1)
        clock.advance(2.5)
        dispatcher.poke()
        await settle()
        assert len(doc.seen) == 1, "retried before Retry-After"
        clock.advance(0.5)
        dispatcher.poke()
        await eventually(lambda: len(doc.posted) == 1)
        await save(store, make_alert())  # a replayed save changes nothing
        dispatcher.poke()
        await settle()
    assert len(doc.seen) == 2 and len(doc.posted) == 1


# --- what the message says ------------------------------------------------------------------


def _all_text(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)


async def test_untrusted_text_is_escaped_the_way_slack_says_and_only_that_way(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    message = f"{HOSTILE} &amp; fix > 3 < 4"
    single = Single(
        make_alert(message=message, app_name="R&D <tools>"),
        Destination("#deploys", mention="<!subteam^S0ONCALL>"),
    )
    assert isinstance(await bot(doc, observer).send(single), Delivered)
    body = doc.posted[0].body
    section = body["blocks"][1]["text"]["text"]
    escaped = (
        "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|docs&gt; &amp; co "
        "&amp;amp; fix &gt; 3 &lt; 4"
    )
    assert escaped in section
    # Nothing the committer wrote survives as markup: every < left is our own.
    for text in (body["text"], section):
        assert "<!channel>" not in text and "<@U123>" not in text and "<https://evil" not in text
    # The configured mention is trusted markup, in the notification text and the message.
    assert body["text"].startswith("<!subteam^S0ONCALL> ")
    assert section.startswith("<!subteam^S0ONCALL> ")
    assert "R&amp;D &lt;tools&gt;" in body["text"]


async def test_dates_use_slacks_date_token_with_a_fallback(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    assert isinstance(await bot(doc, observer).send(failure()), Delivered)
    text = _all_text(doc.posted[0].body)
    assert "<!date^1714565052^{date_short_pretty} at {time}|2024-05-01 12:04 UTC>" in text


async def test_longest_names_and_reasons_stay_within_block_kit_limits(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    huge = ("<!here> & 💥 " * 400).strip()
    single = Single(
        make_alert(app_name=huge, branch="feature/" + "ü" * 240, message=huge),
        Destination("#deploys", mention="<@U0ONCALL>"),
    )
    assert isinstance(await bot(doc, observer).send(single), Delivered)
    [seen] = doc.seen
    assert seen.body["blocks"] and not block_kit_errors(seen.body["blocks"])
    assert _units(seen.body["text"]) <= 4000


# --- living messages and idempotent resends ------------------------------------------------


def living(alert: Any, **kw: Any) -> Single:
    return Single(alert, Destination("#deploys", "<@U0123>", living=True), **kw)


async def test_every_post_carries_its_alert_in_message_metadata(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    await bot(doc, observer).send(failure())
    [seen] = doc.posted
    meta = seen.body["metadata"]
    assert meta["event_type"] == "amplify_monitor_alert"
    token = meta["event_payload"]["dedup_key"]
    # A digest of the dedup key: the branch name (untrusted) never travels in metadata.
    assert isinstance(token, str) and len(token) == 32 and "main" not in token


async def test_a_living_message_is_updated_by_channel_id_and_ts(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    notifier = bot(doc, observer)
    started = await notifier.send(living(make_alert(status="RUNNING", kind="progress")))
    assert isinstance(started, Delivered) and started.message is not None
    ended = await notifier.send(living(make_alert(), message=started.message))
    assert isinstance(ended, Delivered) and ended.receipt == started.receipt
    [update] = doc.calls("update")
    channel, ts = started.receipt.split(":")  # type: ignore[union-attr]
    assert (update.body["channel"], update.body["ts"]) == (channel, ts) == ("C0DEPLOYS", ts)
    assert doc.messages[(channel, ts)]["text"].startswith("🔴")
    # The failure's broadcast reply: in the message's thread, with reply_broadcast set.
    reply = doc.posted[-1]
    assert reply.body["thread_ts"] == ts and reply.body["reply_broadcast"] is True
    assert reply.body["text"].startswith("<@U0123>")


async def test_an_edit_window_closed_update_becomes_a_thread_reply(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    notifier = bot(doc, observer)
    started = await notifier.send(living(make_alert(status="RUNNING", kind="progress")))
    assert isinstance(started, Delivered) and started.message is not None
    ts = started.message.receipt.split(":")[1]
    doc.closed.add(ts)
    done = await notifier.send(
        living(make_alert(status="SUCCEED", kind="progress"), message=started.message)
    )
    assert isinstance(done, Delivered) and done.receipt == started.receipt
    reply = doc.posted[-1]
    assert reply.body["thread_ts"] == ts and "succeeded" in reply.body["text"]


async def test_a_resend_finds_the_interrupted_post_in_history_and_posts_nothing(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    notifier = bot(doc, observer)
    first = await notifier.send(Single(make_alert(), Destination("C0DEPLOYS")))
    assert isinstance(first, Delivered)
    # As after a crash: the attempt began, its answer was never recorded.
    again = await notifier.send(
        Single(make_alert(), Destination("C0DEPLOYS"), in_doubt_since=time.time() - 5)
    )
    assert isinstance(again, Delivered) and again.receipt == first.receipt
    assert len(doc.posted) == 1
    assert observer.resend_checks == {"found": 1}
    [read] = doc.calls("history")
    assert read.body["channel"] == "C0DEPLOYS"
    assert read.body["include_all_metadata"] in ("1", "true", "True")
    assert float(read.body["oldest"]) < time.time() - 5


async def test_a_resend_of_a_message_slack_never_got_posts_it(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    notifier = bot(doc, observer)
    result = await notifier.send(
        Single(make_alert(), Destination("C0DEPLOYS"), in_doubt_since=time.time())
    )
    assert isinstance(result, Delivered)
    assert len(doc.posted) == 1 and len(doc.calls("history")) == 1
    assert observer.resend_checks == {"absent": 1}


async def test_without_the_history_scope_a_resend_posts_and_says_the_fix_once(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    doc.scopes.discard("channels:history")
    notifier = bot(doc, observer)
    with structlog.testing.capture_logs() as logs:
        for job in ("41", "42"):
            result = await notifier.send(
                Single(make_alert(job), Destination("C0DEPLOYS"), in_doubt_since=time.time())
            )
            assert isinstance(result, Delivered)
    assert len(doc.posted) == 2  # at least once: the alert is not lost for want of a scope
    assert observer.resend_checks == {"unavailable": 2}
    [warning] = [e for e in logs if e["event"] == "slack_history_unavailable"]
    assert warning["reason"] == "missing_scope" and "channels:history" in warning["fix"]


async def test_a_resend_waits_when_history_is_rate_limited_rather_than_risk_a_double(
    doc: DocSlack, observer: RecordingObserver
) -> None:
    limited = Raw(429, b'{"ok":false,"error":"ratelimited"}', headers={"Retry-After": "7"})
    doc.script["history"].append(limited)
    result = await bot(doc, observer).send(
        Single(make_alert(), Destination("C0DEPLOYS"), in_doubt_since=time.time())
    )
    assert result == Retry("rate_limited", after=7.0)
    assert doc.posted == []
    assert observer.resend_checks == {"failed": 1}
