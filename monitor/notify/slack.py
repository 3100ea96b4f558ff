"""The Slack bot notifier: the Web API with a bot token, over slack_sdk.

With `webhook`, the only modules that import slack_sdk. Owns talking to Slack's Web API: carrying out a notification's
plan (posts, updates, the history read that keeps a resend from posting twice) and turning
every answer into delivered, retry soon or rejected, as `slack_answers` classifies it. Never
raises for a delivery problem; never logs or returns the token or the webhook URL.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import anyio.to_thread
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from monitor import log
from monitor.model import MessageRef
from monitor.notify.base import (
    Delivered,
    Destination,
    Digest,
    Notification,
    Pacing,
    Rejected,
    Retry,
    SendResult,
)
from monitor.notify.plan import Post, Update, plan
from monitor.notify.render import render_digest, render_single
from monitor.notify.slack_answers import (
    Receipt,
    Resend,
    classify,
    connection_error,
    find_posted,
    metadata,
    unreadable_answer,
)
from monitor.notify.text import SlackMessage
from monitor.observe import Observer

_log = log.get(__name__)

# slack_sdk logs request URLs and bodies at DEBUG; a webhook URL is a secret. Its clients get a
# logger of their own pinned at WARNING, whatever level the root logger is set to.
SDK_LOG = logging.getLogger("monitor.notify.slack.sdk")
SDK_LOG.setLevel(logging.WARNING)

DEFAULT_TIMEOUT = 10  # seconds per HTTP call; slack_sdk wants an int

# chat.postMessage: about one message a second per channel, short bursts tolerated. A burst of
# five lets the default digest_threshold's messages go out at once, as flood control promises.
BOT_PACING = Pacing(rate=1.0, burst=5.0)
# Incoming webhooks: one message a second per webhook.
WEBHOOK_PACING = Pacing(rate=1.0, burst=5.0)


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


CONNECTION_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


def render_notification(notification: Notification) -> SlackMessage:
    if isinstance(notification, Digest):
        return render_digest(notification)
    return render_single(notification)


# Slack's clock and ours differ: a history read looks this far back before the first attempt.
_HISTORY_MARGIN = 120.0
# At most this many pages of history (100 messages each) are read for one resend.
_HISTORY_PAGES = 5
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,}")
_HISTORY_FIX = (
    "add the channels:history and groups:history scopes to the Slack app and reinstall it, "
    "and name channels by id (C0123...): until then an alert whose send was interrupted may "
    "be posted twice"
)

# What one step of a plan ends in: the message it posted or updated, or why it did not.
Got = Receipt | SendResult | Resend


class SlackBotNotifier:
    """The Web API with a bot token: one lane per channel; recoveries reply in threads; living
    messages are updated in place (chat.update); a resend of an alert that may already be in
    Slack reads the channel's history first and posts only if it is not there.

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
        # Channel names as configured -> the ids Slack answered: history wants an id.
        self._channel_ids: dict[str, str] = {}
        self._history_warned: set[str] = set()

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
        client = AsyncWebClient(
            token=token,
            base_url=self._base_url,
            timeout=self._timeout,
            logger=SDK_LOG,
            # Retries belong to the outbox, which keeps them across restarts and off the lane.
            retry_handlers=[],
        )
        return await self._carry_out(client, notification)

    async def _carry_out(self, client: AsyncWebClient, notification: Notification) -> SendResult:
        since = notification.in_doubt_since
        main: MessageRef | None = None
        main_receipt: Receipt | None = None
        for step in plan(notification):
            got: Got
            if isinstance(step, Update):
                got = await self._update(client, step.target, step.message)
                if got == "gone" and step.main:
                    # Deleted by someone: the story goes on in a new message.
                    got = await self._post(
                        client, notification, Post(step.message, step.dedup), since
                    )
                elif got == "frozen" and step.main:
                    # Too old to edit: say it in its thread; the old message stays the job's.
                    reply = Post(step.message, step.dedup, thread=step.target, main=False)
                    got = await self._post(client, notification, reply, since)
                    if isinstance(got, Receipt):
                        got = step.target
                elif got in ("gone", "frozen"):
                    continue  # a failure message that cannot take its "recovered" line
            else:
                thread = main_receipt if step.in_main_thread else step.thread
                if step.in_main_thread and thread is None:
                    continue  # nothing to reply under (Slack gave no ts)
                got = await self._post(client, notification, replace(step, thread=thread), since)
            if isinstance(got, str):
                return Rejected("payload_refused", "Slack refused even the plain-text message")
            if isinstance(got, Delivered):
                continue  # taken, but without a ts to keep
            if not isinstance(got, Receipt):
                # What is done stays done: the message so far is kept with the failure, so the
                # retry updates it instead of posting another.
                return replace(got, message=main)
            if step.main:
                main_receipt = got
                main = MessageRef(got.encode(), step.message.encode())
        return Delivered(receipt=main.receipt if main else None, message=main)

    def _channel_id(self, channel: str) -> str | None:
        name = channel.lstrip("#")
        if _CHANNEL_ID.fullmatch(name):
            return name
        return self._channel_ids.get(channel)

    def _warn_history(self, reason: str, **fields: str) -> None:
        if reason not in self._history_warned:
            self._history_warned.add(reason)
            _log.warning("slack_history_unavailable", reason=reason, fix=_HISTORY_FIX, **fields)

    async def _post(
        self,
        client: AsyncWebClient,
        notification: Notification,
        step: Post,
        since: float | None = None,
    ) -> Got:
        """Post `step` unless an earlier attempt (begun at `since`) already did."""
        destination = notification.destination.channel
        thread = step.thread
        channel = thread.channel if thread is not None and thread.channel else destination
        if since is not None:
            found = await self._find(client, channel, step, since)
            if found is not None:
                return found
        thread_ts = thread.ts if thread is not None else None
        got = await self._call_post(client, channel, step, step.message, thread_ts)
        if got == "thread":
            # The thread is gone (message deleted): say it at the top level rather than never.
            channel, thread_ts = destination, None
            got = await self._call_post(client, channel, step, step.message, thread_ts)
        if got == "payload":
            text_only = SlackMessage(step.message.text)
            got = await self._call_post(client, channel, step, text_only, thread_ts)
        return got

    async def _find(
        self, client: AsyncWebClient, channel: str, step: Post, since: float
    ) -> Receipt | Retry | Rejected | None:
        """The message an interrupted attempt posted, read back from Slack, or None."""
        channel_id = self._channel_id(channel)
        if channel_id is None:
            self._warn_history("channel_name", channel=channel)
            self._observer.resend_check("unavailable")
            return None
        found = await self._read_history(client, channel_id, step, since)
        if found is None or isinstance(found, Receipt):
            self._observer.resend_check("absent" if found is None else "found")
        elif isinstance(found, str):
            self._warn_history(found, channel=channel)
            self._observer.resend_check("unavailable")
            return None
        else:
            self._observer.resend_check("failed")
        return found

    async def _read_history(
        self, client: AsyncWebClient, channel_id: str, step: Post, since: float
    ) -> Receipt | Retry | Rejected | str | None:
        """The interrupted post, None when it is not there, a Retry or Rejected when history
        could not be read for now, or the error code when it cannot be read at all."""
        in_thread = step.thread is not None and not step.broadcast
        oldest = f"{max(0.0, since - _HISTORY_MARGIN):.6f}"
        cursor: str | None = None
        for _ in range(_HISTORY_PAGES):
            if in_thread and step.thread is not None:
                call = client.conversations_replies(
                    channel=channel_id,
                    ts=step.thread.ts,
                    include_all_metadata=True,
                    limit=100,
                    cursor=cursor,
                )
            else:
                call = client.conversations_history(
                    channel=channel_id,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=100,
                    cursor=cursor,
                )
            response = await self._web(call)
            if isinstance(response, Retry):
                return response
            if isinstance(response, SlackApiError):
                status, error, headers = _api_error(response)
                verdict = classify(status, error, headers)
                if isinstance(verdict, Retry):
                    return verdict  # not knowing is no reason to risk a double post: wait
                return error or f"http_{status}"
            ts = find_posted(response.get("messages") or [], step.dedup)
            if ts is not None:
                _log.info("slack_resend_skipped", dedup_key=step.dedup, channel=channel_id)
                return Receipt(channel_id, ts)
            meta = response.get("response_metadata") or {}
            cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
            if not response.get("has_more") or not cursor:
                return None
        return None

    async def _call_post(
        self,
        client: AsyncWebClient,
        channel: str,
        step: Post,
        message: SlackMessage,
        thread_ts: str | None,
    ) -> Got:
        response = await self._web(
            client.chat_postMessage(
                channel=channel,
                text=message.text,
                blocks=message.blocks or None,
                thread_ts=thread_ts,
                reply_broadcast=True if step.broadcast and thread_ts else None,
                metadata=metadata(step.dedup),
                # Links to the console are for clicking, not for previews filling the channel.
                unfurl_links=False,
                unfurl_media=False,
            )
        )
        if isinstance(response, Retry):
            return response
        if isinstance(response, SlackApiError):
            return self._refused(response, channel)
        ts = response.get("ts")
        posted_in = response.get("channel")
        if not isinstance(ts, str):
            # ok without a ts: delivered, but nothing to thread on or update later.
            return Delivered(receipt=None)
        if isinstance(posted_in, str):
            self._channel_ids[channel] = posted_in
            return Receipt(posted_in, ts)
        return Receipt(channel, ts)

    async def _update(self, client: AsyncWebClient, target: Receipt, message: SlackMessage) -> Got:
        channel = target.channel or ""
        got = await self._call_update(client, channel, target.ts, message)
        if got == "payload":
            got = await self._call_update(client, channel, target.ts, SlackMessage(message.text))
        if isinstance(got, Delivered):
            return target
        return got

    async def _call_update(
        self, client: AsyncWebClient, channel: str, ts: str, message: SlackMessage
    ) -> Got:
        response = await self._web(
            client.chat_update(
                channel=channel, ts=ts, text=message.text, blocks=message.blocks or None
            )
        )
        if isinstance(response, Retry):
            return response
        if isinstance(response, SlackApiError):
            return self._refused(response, channel)
        return Delivered()

    async def _web(
        self, call: Awaitable[AsyncSlackResponse]
    ) -> AsyncSlackResponse | SlackApiError | Retry:
        """One Web API call, timed for the metrics: its answer, Slack's refusal for the caller
        to read, or a Retry when the answer never came or was not Slack's."""
        started = time.perf_counter()
        try:
            return await call
        except SlackApiError as exc:
            return exc
        except CONNECTION_ERRORS as exc:
            return connection_error(exc)
        except Exception as exc:
            return unreadable_answer(exc)
        finally:
            self._observer.slack_request(time.perf_counter() - started)

    @staticmethod
    def _refused(exc: SlackApiError, channel: str) -> Got:
        status, error, headers = _api_error(exc)
        if status == 200 and error is None:
            # "ok" missing from a 200 answer: not Slack's JSON, so not a verdict either.
            return unreadable_answer(exc)
        return classify(status, error, headers, f" (channel {channel})")
