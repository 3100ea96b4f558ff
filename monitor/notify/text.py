"""The pieces every Slack message is made of: safe text, Block Kit blocks, links and the facts
read off an alert. Pure functions, no I/O.

Owns the safety rules for untrusted text (commit messages, branch and app names, step reasons):
Slack's control characters are escaped, bare broadcast words defused, and every text is cut to
Block Kit's limits, so nothing a committer writes can ping a channel, forge a link or make Slack
refuse the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from monitor.humanize import duration
from monitor.model import CANCELLED, FAILED, SUCCEED, Alert

Block = dict[str, Any]

# Block Kit limits (https://api.slack.com/reference/block-kit). Slack counts characters; we
# count UTF-16 code units, which is never fewer, so an emoji-heavy text cannot slip past.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
MAX_CONTEXT_TEXT = 2000
# Our own limits, for a message read at a glance.
MAX_FALLBACK_TEXT = 400
MAX_COMMIT_LINE = 200
MAX_NAME = 80
MAX_REASON = 1000
MAX_DIGEST_REASON = 120

_EMOJI = {FAILED: "🔴", CANCELLED: "⚪", SUCCEED: "✅"}
_VERB = {FAILED: "failed", CANCELLED: "was cancelled", SUCCEED: "succeeded"}
_TITLE = {FAILED: "Build failed", CANCELLED: "Build cancelled", SUCCEED: "Build succeeded"}
RECOVERED = "✅"
_ELLIPSIS = "…"

# Broadcast words Slack may link even without angle brackets in some parse modes. A WORD JOINER
# after the "@" keeps the text looking the same while making it no longer the keyword.
_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def escape(text: str) -> str:
    """Make untrusted text inert in any Slack text object.

    ``&``, ``<`` and ``>`` become entities (Slack's escaping rules), so ``<!channel>`` or
    ``<https://evil|docs>`` show as typed instead of pinging or linking; control characters go.
    """
    text = _CONTROL.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060\\1", text)


def fit(text: str, limit: int) -> str:
    """`escape(text)` cut so that it is at most `limit` long, never inside an entity."""
    escaped = escape(text)
    if units(escaped) <= limit:
        return escaped
    # Cut the raw text, then escape: an entity is never split and the ellipsis is honest.
    return _longest_prefix(text, limit - units(_ELLIPSIS), escape).rstrip() + _ELLIPSIS


def cut(text: str, limit: int) -> str:
    """Cut already-safe markup (our own) to `limit` units."""
    if units(text) <= limit:
        return text
    return _longest_prefix(text, limit - units(_ELLIPSIS), lambda s: s) + _ELLIPSIS


def _longest_prefix(text: str, budget: int, render: Callable[[str], str]) -> str:
    """render(prefix) for the longest prefix of `text` whose rendering fits `budget` units."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if units(render(text[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return render(text[:lo])


def code(text: str, limit: int = MAX_NAME) -> str:
    """Untrusted text inside an inline code span; a backtick in it would end the span early."""
    return "`" + fit(text.replace("`", "'"), limit) + "`"


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def plain(text: str, *, emoji: bool = True) -> Block:
    return {"type": "plain_text", "text": text, "emoji": emoji}


def mrkdwn(text: str) -> Block:
    # verbatim: no auto-linking of URLs or channel names and no mention parsing in what we
    # send; the only links and mentions are the ones we write with explicit <...> markup.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(cut(text, MAX_SECTION_TEXT))}


# --- facts derived from an alert ---------------------------------------------------------


def console_host(region: str) -> str | None:
    """`alert.region` may be a region ("eu-west-1") or already a console hostname."""
    region = region.strip()
    if not region or not re.fullmatch(r"[A-Za-z0-9.-]+", region):
        return None
    return region if "." in region else f"{region}.console.aws.amazon.com"


def app_url(alert: Alert) -> str | None:
    host = console_host(alert.region)
    if host is None:
        return None
    return f"https://{host}/amplify/apps/{quote(alert.key.app_id, safe='')}"


def job_url(alert: Alert, job_id: str | None = None) -> str | None:
    base = app_url(alert)
    if base is None:
        return None
    branch = quote(alert.key.branch, safe="")
    job = quote(job_id or alert.job.job_id, safe="")
    url = f"{base}/branches/{branch}/deployments/{job}"
    # A branch name can be long enough to push the URL past what a button or link accepts;
    # the app's page is one click further from the job but still gets the reader there.
    return url if len(url) <= MAX_URL else base


def log_url(alert: Alert) -> str | None:
    step = alert.failed_step
    if step is None or not step.log_url.startswith("https://") or len(step.log_url) > MAX_URL:
        return None
    return step.log_url


def link(url: str | None, label: str) -> str:
    """A mrkdwn link around an already-escaped label; the label alone when there is no URL.

    Only URLs we built (percent-encoded, so no ``|`` or ``>``) go here; presigned log URLs
    carry ``&`` and go in a button's url field instead, which Slack does not parse.
    """
    return f"<{url}|{label}>" if url else label


def branch_site(alert: Alert) -> str | None:
    """A link to the deployed branch. The poller built the URL from a checked host name, so it
    holds nothing that could break the link's markup; anything else is shown as no link."""
    url = alert.branch_url
    if not re.fullmatch(r"https://[a-z0-9.-]+", url) or len(url) > 300:
        return None
    return f"<{url}|{url.removeprefix('https://')}>"


def titled(template: str | None, alert: Alert) -> str | None:
    """A route's title template filled in for `alert` and made safe; None without a template.

    The config checked the field names; the values are untrusted, so the result is escaped.
    """
    if template is None:
        return None
    text = template.format(
        app=alert.app_name or alert.key.app_id,
        branch=alert.key.branch,
        job_id=alert.job.job_id,
        status=alert.status,
        job_type=alert.job.job_type,
    )
    return fit(text, 120)


def slack_date(when: datetime) -> str:
    """Slack's date token: each reader sees their own time zone; the fallback is UTC."""
    utc = when.astimezone(UTC)
    fallback = utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _reference_time(alert: Alert) -> datetime | None:
    job = alert.job
    return job.end_time or job.start_time or job.commit_time


def last_success(alert: Alert) -> str:
    if alert.last_success_time is None:
        return "none on record"
    when = slack_date(alert.last_success_time)
    ref = _reference_time(alert)
    if ref is None:
        return when
    ago = (ref - alert.last_success_time).total_seconds()
    if ago < 0:
        return when
    return f"{duration(ago)} before this build ({when})"


def status_title(status: str) -> str:
    return _TITLE.get(status, f"Build {status}")


def status_verb(status: str) -> str:
    return _VERB.get(status, f"ended {status}")


def status_emoji(status: str) -> str:
    return _EMOJI.get(status, "⚠️")


def where(alert: Alert) -> str:
    return f"{alert.app_name or alert.key.app_id} / {alert.key.branch}"


# --- the messages ----------------------------------------------------------------------


@dataclass(frozen=True)
class SlackMessage:
    """What goes to chat.postMessage or a webhook: the fallback `text` (notifications, screen
    readers, clients without blocks) and the Block Kit `blocks`."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}

    def encode(self) -> str:
        """For the store: what a message shows, so a later update can build on it."""
        return json.dumps(self.payload(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> SlackMessage | None:
        """The message `encode` wrote, or None for anything else (an empty or old record)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            return None
        blocks = data.get("blocks")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            blocks = []
        return cls(data["text"], list(blocks))


def context_block(alert: Alert) -> Block:
    parts = [f"app {code(alert.key.app_id, 40)}"]
    if alert.region:
        parts.append(fit(alert.region, 60))
    if alert.job.start_time is not None:
        parts.append(f"started {slack_date(alert.job.start_time)}")
    site = branch_site(alert)
    if site:
        parts.append(site)
    parts.append("amplify-monitor")
    return {"type": "context", "elements": [mrkdwn(cut(" · ".join(parts), MAX_CONTEXT_TEXT))]}


def commit_line(alert: Alert) -> str | None:
    job = alert.job
    line = first_line(job.commit_message)
    if not job.commit_id and not line:
        return None
    out = "*Commit*"
    if job.commit_id:
        out += " " + code(job.commit_id[:7], 7)
    if line:
        out += " " + fit(line, MAX_COMMIT_LINE)
    return out


def job_label(alert: Alert, job_id: str | None = None) -> str:
    return f"#{fit(job_id or alert.job.job_id, 20)}"
