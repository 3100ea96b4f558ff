"""What Slack's answers mean: every refusal classified as retry soon, rejected (with the fix
for a person) or a resend the notifier makes itself, and the references (`Receipt`) and
message metadata that tie a Slack message to an alert. Pure: no slack_sdk, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from monitor.notify.base import Rejected, Retry, SendResult

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
# chat.update: the message was deleted (post a new one), or can no longer be edited (say it
# in its thread instead).
_GONE = frozenset({"message_not_found"})
_FROZEN = frozenset({"cant_update_message", "edit_window_closed"})


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


# What a refused call asks of the notifier itself: resend without the thread, or as text only;
# for an update, post anew ("gone") or reply in the thread ("frozen").
Resend = Literal["thread", "payload", "gone", "frozen"]


def classify(
    status: int, error: str | None, headers: Mapping[str, str], hint_context: str = ""
) -> SendResult | Resend:
    """Classify a refused call from its HTTP status and Slack's error code."""
    if status == 429 or error in ("ratelimited", "rate_limited"):
        return Retry("rate_limited", after=retry_after_header(headers))
    if status >= 500 or status == 408 or error in _TRANSIENT:
        return Retry(f"http_{status}" + (f" {error}" if error else ""))
    if error in _THREAD:
        return "thread"
    if error in _GONE:
        return "gone"
    if error in _FROZEN:
        return "frozen"
    if error in _PAYLOAD or (status == 400 and error is None):
        return "payload"
    code = error or f"http_{status}"
    hint = _HINTS.get(code, "Slack refused the message; see its error code")
    return Rejected(code, f"{hint}{hint_context}")


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    # Header names are case-insensitive, and not every mapping handed here knows that.
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def connection_error(exc: BaseException) -> Retry:
    # The type only: some aiohttp errors quote the URL, and a webhook URL is a secret.
    return Retry(f"connection: {type(exc).__name__}")


def unreadable_answer(exc: BaseException) -> Retry:
    # slack_sdk trips over answers that are not Slack's JSON (a proxy's 502 page labelled
    # application/json, a 200 in text/plain): its own errors then carry a raw aiohttp response,
    # or are not SlackApiError at all. Whether the message was posted is unknown, and a lost
    # alert is worse than a doubled one: retry. The type only, for the same reason as above.
    return Retry(f"unreadable answer: {type(exc).__name__}")


def webhook_error(body: str | None) -> str | None:
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


# Every message carries this metadata, so that a resend after a crash can tell whether Slack
# already has it (Slack itself has no idempotency key).
METADATA_EVENT = "amplify_monitor_alert"


def dedup_token(dedup: str) -> str:
    """What a message's metadata carries for its alert's dedup key: a digest of it, so that
    branch names (untrusted, any length) never travel there."""
    return hashlib.sha256(dedup.encode()).hexdigest()[:32]


def metadata(dedup: str) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT, "event_payload": {"dedup_key": dedup_token(dedup)}}


def find_posted(messages: Iterable[Any], dedup: str) -> str | None:
    """The ts of the message in `messages` (conversations.history or .replies) that carries
    `dedup` in its metadata, or None."""
    token = dedup_token(dedup)
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        meta = message.get("metadata")
        if not isinstance(meta, Mapping) or meta.get("event_type") != METADATA_EVENT:
            continue
        payload = meta.get("event_payload")
        ts = message.get("ts")
        if (
            isinstance(payload, Mapping)
            and payload.get("dedup_key") == token
            and isinstance(ts, str)
        ):
            return ts
    return None
