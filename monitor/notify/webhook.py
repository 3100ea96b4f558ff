"""The incoming-webhook notifier, over slack_sdk: one fixed channel, so one lane; no threads
and no updates (a webhook can only post), so every alert is a message of its own.
"""

from __future__ import annotations

import time

from slack_sdk.webhook.async_client import AsyncWebhookClient

from monitor.notify.base import Delivered, Destination, Notification, Pacing, Rejected, SendResult
from monitor.notify.slack import (
    CONNECTION_ERRORS,
    DEFAULT_TIMEOUT,
    SDK_LOG,
    WEBHOOK_PACING,
    render_notification,
)
from monitor.notify.slack_answers import (
    Resend,
    classify,
    connection_error,
    unreadable_answer,
    webhook_error,
)
from monitor.notify.text import SlackMessage
from monitor.observe import Observer


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
        message = render_notification(notification)
        client = AsyncWebhookClient(
            url=self._url, timeout=self._timeout, logger=SDK_LOG, retry_handlers=[]
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
        except CONNECTION_ERRORS as exc:
            return connection_error(exc)
        except Exception as exc:
            return unreadable_answer(exc)
        finally:
            self._observer.slack_request(time.perf_counter() - started)
        if response.status_code == 200:
            return Delivered(receipt=None)
        return classify(
            response.status_code, webhook_error(response.body), dict(response.headers or {})
        )
