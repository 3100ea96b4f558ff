"""The Slack notifiers: bot token (chat.postMessage) and incoming webhook, over slack_sdk.

The only module that imports slack_sdk. Owns talking to Slack and classifying every answer as
delivered, retry soon (429 with its Retry-After, 5xx, connection trouble) or rejected (a fault
a person must fix, with the fix spelled out). Never raises for a delivery problem; never logs
or returns the token or the webhook URL.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import anyio.to_thread
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from monitor.notify.base import (
    Delivered,
    Destination,
    Digest,
    Notification,
    Pacing,
    Rejected,
    Retry,
    SendResult,
    Single,
)
from monitor.notify.render import render_digest, render_single
from monitor.notify.text import SlackMessage
from monitor.observe import Observer

# slack_sdk logs request URLs and bodies at DEBUG; a webhook URL is a secret. Its clients get a
# logger of their own pinned at WARNING, whatever level the root logger is set to.
_sdk_log = logging.getLogger("monitor.notify.slack.sdk")
_sdk_log.setLevel(logging.WARNING)

DEFAULT_TIMEOUT = 10  # seconds per HTTP call; slack_sdk wants an int

# chat.postMessage: about one message a second per channel, short bursts tolerated. A burst of
# five lets the default digest_threshold's messages go out at once, as flood control promises.
BOT_PACING = Pacing(rate=1.0, burst=5.0)
# Incoming webhooks: one message a second per webhook.
WEBHOOK_PACING = Pacing(rate=1.0, burst=5.0)

_AUTH_HINT = (
    "the bot token is not accepted: set [slack] token or token_file to a valid bot token "
    "(xoxb-...) of an app installed in the workspace, with the chat:write scope"
)
_HINTS: dict[str, str] = {
    "invalid_auth": _AUTH_HINT,
    "not_authed": _AUTH_HINT,
    "account_inactive": _AUTH_HINT,
    "token_revoked": _AUTH_HINT,
    "token_expired": _AUTH_HINT,
    "not_allowed_token_type": _AUTH_HINT,
    "no_permission": "the app lacks a permission: add the chat:write scope and reinstall it",
    "missing_scope": "the app lacks a scope: add chat:write (and chat:write.public to post "
    "without being invited) and reinstall it",
    "ekm_access_denied": "the workspace's key management refuses access: ask its admins",
    "channel_not_found": "no such channel, or a private one the bot is not in: check [slack] "
    "channel / [[slack.routes]] channel (a channel id like C0123 is safest) and /invite the app",
    "not_in_channel": "the bot is not in this channel: /invite the app there, or add the "
    "chat:write.public scope",
    "is_archived": "the channel is archived: unarchive it or route these alerts elsewhere",
    "restricted_action": "workspace settings forbid the app posting in this channel",
    "restricted_action_read_only_channel": "the channel is read-only for the app",
    "restricted_action_thread_only_channel": "the channel only allows thread replies",
    "restricted_action_non_threadable_channel": "the channel does not allow threads",
    "team_access_not_granted": "the token has no access to this workspace",
    # Incoming webhooks answer with these bodies.
    "invalid_token": "the webhook URL is no longer valid: create a new incoming webhook and "
    "update [slack] webhook_url",
    "no_service": "the webhook was removed or disabled: create a new incoming webhook and "
    "update [slack] webhook_url",
    "no_service_id": "the webhook URL is malformed: copy it again from the Slack app settings",
    "no_team": "the webhook's workspace is gone or the URL is malformed",
    "team_disabled": "the webhook's workspace is disabled",
    "action_prohibited": "an admin restricted posting to the webhook's channel",
    "posting_to_general_channel_denied": "only admins may post in the webhook's channel",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or use a new webhook",
    "no_active_hooks": "the webhook is disabled: re-enable incoming webhooks for the app",
}
# Slack answers these when the fault is on its side or passing: retry with backoff.
_TRANSIENT = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
        "org_login_required",
        "rollup_error",
    }
)
# The message itself was refused. It is our rendering at fault, so the text alone is sent
# instead: a person still hears about the failure, without the blocks.
_PAYLOAD = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_payload",
        "msg_too_long",
        "msg_blocks_too_long",
        "too_many_blocks",
        "invalid_attachments",
        "too_many_attachments",
    }
)
_THREAD = frozenset({"thread_not_found", "invalid_thread_ts", "cannot_reply_to_message"})


@dataclass(frozen=True)
class Receipt:
    """What chat.postMessage answered, kept in the outbox so a recovery can reply in the
    failure's thread (in the channel it was posted to, even if the routes changed since)."""

    channel: str | None
    ts: str

    def encode(self) -> str:
        return f"{self.channel}:{self.ts}" if self.channel else self.ts

    @classmethod
    def decode(cls, text: str) -> Receipt:
        channel, sep, ts = text.partition(":")
        return cls(channel, ts) if sep else cls(None, text)


# What a refused call asks of the notifier itself: resend without the thread, or as text only.
Resend = Literal["thread", "payload"]


def classify(
    status: int, error: str | None, headers: Mapping[str, str], hint_context: str = ""
) -> SendResult | Resend:
    """Classify a refused call from its HTTP status and Slack's error code."""
    if status == 429 or error in ("ratelimited", "rate_limited"):
        return Retry("rate_limited", after=_retry_after(headers))
    if status >= 500 or status == 408 or error in _TRANSIENT:
        return Retry(f"http_{status}" + (f" {error}" if error else ""))
    if error in _THREAD:
        return "thread"
    if error in _PAYLOAD or (status == 400 and error is None):
        return "payload"
    code = error or f"http_{status}"
    hint = _HINTS.get(code, "Slack refused the message; see its error code")
    return Rejected(code, f"{hint}{hint_context}")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    # Header names are case-insensitive, and not every mapping handed here knows that.
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _connection_error(exc: BaseException) -> Retry:
    # The type only: some aiohttp errors quote the URL, and a webhook URL is a secret.
    return Retry(f"connection: {type(exc).__name__}")


def _unreadable_answer(exc: BaseException) -> Retry:
    # slack_sdk trips over answers that are not Slack's JSON (a proxy's 502 page labelled
    # application/json, a 200 in text/plain): its own errors then carry a raw aiohttp response,
    # or are not SlackApiError at all. Whether the message was posted is unknown, and a lost
    # alert is worse than a doubled one: retry. The type only, for the same reason as above.
    return Retry(f"unreadable answer: {type(exc).__name__}")


def _api_error(exc: SlackApiError) -> tuple[int, str | None, Mapping[str, str]]:
    """Status, Slack's error code and headers of a refused call, whatever shape slack_sdk gave
    its `response` (an AsyncSlackResponse, or the bare aiohttp response of a non-JSON answer)."""
    response: Any = exc.response
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        status = getattr(response, "status", None)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    headers = getattr(response, "headers", None) or {}
    return (
        status if isinstance(status, int) else 0,
        error if isinstance(error, str) else None,
        {str(k): str(v) for k, v in headers.items()},
    )


_CONNECTION_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


def _render(notification: Notification) -> SlackMessage:
    if isinstance(notification, Digest):
        return render_digest(notification)
    return render_single(notification)


class SlackBotNotifier:
    """chat.postMessage with a bot token; one lane per channel; recoveries reply in threads.

    :param token: returns the bot token; called for every message (in a worker thread), so a
        token_file rotated by Kubernetes or systemd is picked up without a restart.
    :param base_url: the Web API root, e.g. "https://slack.com/api/" or a test server's.
    """

    name = "slack"
    threads = True
    flood_control = True

    def __init__(
        self,
        token: Callable[[], str | None],
        base_url: str,
        observer: Observer,
        *,
        timeout: int = DEFAULT_TIMEOUT,
        pacing: Pacing = BOT_PACING,
    ) -> None:
        self._token = token
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._observer = observer
        self._timeout = timeout
        self.pacing: Pacing | None = pacing

    def lane(self, destination: Destination) -> str:
        return destination.channel

    async def send(self, notification: Notification) -> SendResult:
        try:
            token = await anyio.to_thread.run_sync(self._token)
        except OSError as exc:
            return Rejected(
                "token_file_unreadable",
                f"cannot read [slack] token_file ({exc.strerror or type(exc).__name__})",
            )
        if not token:
            return Rejected("empty_token", "[slack] token or token_file holds no token")

        channel = notification.destination.channel
        thread_ts: str | None = None
        if isinstance(notification, Single) and notification.thread:
            receipt = Receipt.decode(notification.thread)
            channel = receipt.channel or channel
            thread_ts = receipt.ts
        message = _render(notification)
        client = AsyncWebClient(
            token=token,
            base_url=self._base_url,
            timeout=self._timeout,
            logger=_sdk_log,
            # Retries belong to the outbox, which keeps them across restarts and off the lane.
            retry_handlers=[],
        )

        result = await self._post(client, channel, message, thread_ts)
        if result == "thread":
            # The thread is gone (message deleted): say it at the top level rather than never.
            channel, thread_ts = notification.destination.channel, None
            result = await self._post(client, channel, message, thread_ts)
        if result == "payload":
            result = await self._post(client, channel, SlackMessage(message.text), thread_ts)
        if isinstance(result, str):
            return Rejected("payload_refused", "Slack refused even the plain-text message")
        return result

    async def _post(
        self,
        client: AsyncWebClient,
        channel: str,
        message: SlackMessage,
        thread_ts: str | None,
    ) -> SendResult | Resend:
        started = time.perf_counter()
        try:
            response = await client.chat_postMessage(
                channel=channel,
                text=message.text,
                blocks=message.blocks or None,
                thread_ts=thread_ts,
                # Links to the console are for clicking, not for previews filling the channel.
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            status, error, headers = _api_error(exc)
            if status == 200 and error is None:
                # "ok" missing from a 200 answer: not Slack's JSON, so not a verdict either.
                return _unreadable_answer(exc)
            return classify(status, error, headers, f" (channel {channel})")
        except _CONNECTION_ERRORS as exc:
            return _connection_error(exc)
        except Exception as exc:
            return _unreadable_answer(exc)
        finally:
            self._observer.slack_request(time.perf_counter() - started)
        ts = response.get("ts")
        posted_in = response.get("channel")
        if not isinstance(ts, str):
            # ok without a ts: delivered, but nothing to thread on later.
            return Delivered(receipt=None)
        return Delivered(Receipt(posted_in if isinstance(posted_in, str) else channel, ts).encode())


class SlackWebhookNotifier:
    """An incoming webhook: one fixed channel, so one lane, and no threads (a recovery is a
    short message of its own)."""

    name = "slack-webhook"
    threads = False
    flood_control = True

    def __init__(
        self,
        url: str,
        observer: Observer,
        *,
        timeout: int = DEFAULT_TIMEOUT,
        pacing: Pacing = WEBHOOK_PACING,
    ) -> None:
        self._url = url
        self._observer = observer
        self._timeout = timeout
        self.pacing: Pacing | None = pacing

    def lane(self, destination: Destination) -> str:
        return "webhook"

    async def send(self, notification: Notification) -> SendResult:
        message = _render(notification)
        client = AsyncWebhookClient(
            url=self._url, timeout=self._timeout, logger=_sdk_log, retry_handlers=[]
        )
        result = await self._post(client, message)
        if isinstance(result, str):  # "payload" (a webhook has no threads)
            result = await self._post(client, SlackMessage(message.text))
        if isinstance(result, str):
            return Rejected("payload_refused", "Slack refused even the plain-text message")
        return result

    async def _post(self, client: AsyncWebhookClient, message: SlackMessage) -> SendResult | Resend:
        started = time.perf_counter()
        try:
            response = await client.send(
                text=message.text,
                blocks=message.blocks or None,
                unfurl_links=False,
                unfurl_media=False,
            )
        except _CONNECTION_ERRORS as exc:
            return _connection_error(exc)
        except Exception as exc:
            return _unreadable_answer(exc)
        finally:
            self._observer.slack_request(time.perf_counter() - started)
        if response.status_code == 200:
            return Delivered(receipt=None)
        return classify(
            response.status_code, _webhook_error(response.body), dict(response.headers or {})
        )


def _webhook_error(body: str | None) -> str | None:
    """The error code in a webhook's answer: a bare code as text (``no_service``), or a JSON
    object with an ``error`` field; anything else (an HTML page) is not Slack's."""
    text = (body or "").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        error = data.get("error") if isinstance(data, dict) else None
        text = error.strip() if isinstance(error, str) else ""
    return text if text and len(text) < 64 and text.replace("_", "").isalnum() else None
