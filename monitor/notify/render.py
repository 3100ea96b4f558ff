"""Rendering: an alert (or a digest of alerts) -> a Slack message (Block Kit + plain-text
fallback) or a console line. Pure functions, no I/O, tested against golden files.

Owns the safety rules for untrusted text (commit messages, branch and app names, step reasons):
Slack's control characters are escaped, bare broadcast words defused, and every text is cut to
Block Kit's limits, so nothing a committer writes can ping a channel, forge a link or make Slack
refuse the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from monitor.humanize import duration
from monitor.model import CANCELLED, FAILED, SUCCEED, Alert
from monitor.notify.base import Digest, Single

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
_RECOVERED = "✅"
_ELLIPSIS = "…"

# Broadcast words Slack may link even without angle brackets in some parse modes. A WORD JOINER
# after the "@" keeps the text looking the same while making it no longer the keyword.
_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _units(text: str) -> int:
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
    if _units(escaped) <= limit:
        return escaped
    # Cut the raw text, then escape: an entity is never split and the ellipsis is honest.
    return _longest_prefix(text, limit - _units(_ELLIPSIS), escape).rstrip() + _ELLIPSIS


def cut(text: str, limit: int) -> str:
    """Cut already-safe markup (our own) to `limit` units."""
    if _units(text) <= limit:
        return text
    return _longest_prefix(text, limit - _units(_ELLIPSIS), lambda s: s) + _ELLIPSIS


def _longest_prefix(text: str, budget: int, render: Callable[[str], str]) -> str:
    """render(prefix) for the longest prefix of `text` whose rendering fits `budget` units."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _units(render(text[:mid])) <= budget:
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


def _status_title(status: str) -> str:
    return _TITLE.get(status, f"Build {status}")


def _status_verb(status: str) -> str:
    return _VERB.get(status, f"ended {status}")


def _emoji(status: str) -> str:
    return _EMOJI.get(status, "⚠️")


def _where(alert: Alert) -> str:
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


def _context(alert: Alert) -> Block:
    parts = [f"app {code(alert.key.app_id, 40)}"]
    if alert.region:
        parts.append(fit(alert.region, 60))
    if alert.job.start_time is not None:
        parts.append(f"started {slack_date(alert.job.start_time)}")
    parts.append("amplify-monitor")
    return {"type": "context", "elements": [mrkdwn(cut(" · ".join(parts), MAX_CONTEXT_TEXT))]}


def _commit(alert: Alert) -> str | None:
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


def _job_label(alert: Alert, job_id: str | None = None) -> str:
    return f"#{fit(job_id or alert.job.job_id, 20)}"


def render_failure(alert: Alert, mention: str | None = None) -> SlackMessage:
    """The message for a job that ended in an alerted status (failed, cancelled, ...)."""
    job = alert.job
    status = alert.status
    step = alert.failed_step
    emoji = _emoji(status)
    where_raw = _where(alert)

    headline = f"Job {link(job_url(alert), _job_label(alert))}"
    if job.job_type:
        headline += f" ({fit(job.job_type, 30)})"
    headline += f" {_status_verb(status)}"
    if step is not None:
        headline += f" in step *{fit(step.name, 40)}*"
    if job.duration_seconds is not None:
        headline += f" after {duration(job.duration_seconds)}"
    headline += "."
    if mention:
        headline = f"{mention} {headline}"
    commit = _commit(alert)
    main = headline if commit is None else f"{headline}\n{commit}"

    blocks: list[Block] = [
        {
            "type": "header",
            "text": plain(cut(f"{emoji} {_status_title(status)}: {fit(where_raw, 120)}", 150)),
        },
        section(main),
    ]
    if step is not None and step.status_reason.strip():
        reason_lines = fit(step.status_reason.strip(), MAX_REASON).splitlines()[:15]
        quoted = "\n".join(f">{line}" for line in reason_lines)
        blocks.append(section(f"*Why {fit(step.name, 40)} {_status_verb(step.status)}*\n{quoted}"))

    fields = [
        mrkdwn(
            cut(
                f"*App*\n{link(app_url(alert), fit(alert.app_name or alert.key.app_id, MAX_NAME))}",
                MAX_FIELD_TEXT,
            )
        ),
        mrkdwn(cut(f"*Branch*\n{code(alert.key.branch)}", MAX_FIELD_TEXT)),
        mrkdwn(cut(f"*Last success*\n{last_success(alert)}", MAX_FIELD_TEXT)),
    ]
    if job.end_time is not None:
        fields.append(mrkdwn(f"*Ended*\n{slack_date(job.end_time)}"))
    blocks.append({"type": "section", "fields": fields})

    buttons: list[Block] = []
    url = job_url(alert)
    if url:
        buttons.append(
            {
                "type": "button",
                "action_id": "open_job",
                "text": plain("Open in Amplify console"),
                "url": url,
                "style": "danger" if status == FAILED else "primary",
            }
        )
    log = log_url(alert)
    if log and step is not None:
        buttons.append(
            {
                "type": "button",
                "action_id": "open_step_log",
                "text": plain(fit(f"{step.name} log", MAX_BUTTON_TEXT)),
                "url": log,
            }
        )
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append(_context(alert))

    text = f"{emoji} {_status_title(status)}: {fit(where_raw, 120)} — job {_job_label(alert)}"
    if step is not None:
        text += f" in step {fit(step.name, 40)}"
        reason = first_line(step.status_reason)
        if reason:
            text += f": {fit(reason, 160)}"
    text = cut(text, MAX_FALLBACK_TEXT)
    if mention:
        text = f"{mention} {text}"
    return SlackMessage(text=text, blocks=blocks)


def render_recovery(alert: Alert, in_thread: bool) -> SlackMessage:
    """The "recovered" message: short in the failure's thread, self-contained outside it.

    No mention: good news should not page anyone.
    """
    job = alert.job
    where = fit(_where(alert), 120)
    line = f"{_RECOVERED} *Recovered*"
    if not in_thread:
        line += f": {where}"
    line += f" — job {link(job_url(alert), _job_label(alert))}"
    if job.job_type:
        line += f" ({fit(job.job_type, 30)})"
    line += " succeeded"
    if job.duration_seconds is not None:
        line += f" in {duration(job.duration_seconds)}"
    if alert.failed_job_id:
        failed = link(job_url(alert, alert.failed_job_id), _job_label(alert, alert.failed_job_id))
        line += f" (the last failure was job {failed})"
    line += "."
    commit = _commit(alert)
    main = line if commit is None else f"{line}\n{commit}"
    text = f"{_RECOVERED} Recovered: {where} — job {_job_label(alert)} succeeded"
    return SlackMessage(text=cut(text, MAX_FALLBACK_TEXT), blocks=[section(main), _context(alert)])


def render_single(single: Single) -> SlackMessage:
    alert = single.alert
    if alert.kind == "recovery":
        return render_recovery(alert, in_thread=single.thread is not None)
    return render_failure(alert, single.destination.mention)


def _window(seconds: float) -> str:
    return duration(seconds) if seconds >= 1 else f"{seconds:g}s"


def _digest_line(alert: Alert) -> str:
    emoji = _RECOVERED if alert.kind == "recovery" else _emoji(alert.status)
    verb = "recovered" if alert.kind == "recovery" else _status_verb(alert.status)
    line = (
        f"• {emoji} {code(alert.key.branch)} job {link(job_url(alert), _job_label(alert))} {verb}"
    )
    step = alert.failed_step
    if step is not None and alert.kind != "recovery":
        line += f" in *{fit(step.name, 40)}*"
        reason = first_line(step.status_reason)
        if reason:
            line += f": {fit(reason, MAX_DIGEST_REASON)}"
    return line


def _pack(chunks: Iterable[str], limit: int) -> list[str]:
    """Join lines into as few texts of at most `limit` as possible, in order."""
    out: list[str] = []
    current = ""
    for raw in chunks:
        chunk = cut(raw, limit)
        candidate = f"{current}\n{chunk}" if current else chunk
        if _units(candidate) <= limit:
            current = candidate
        else:
            out.append(current)
            current = chunk
    if current:
        out.append(current)
    return out


def render_digest(digest: Digest) -> SlackMessage:
    """The overflow of a flood window as one message, grouped by app, naming every job once."""
    by_app: dict[str, list[Alert]] = {}
    for alert in digest.alerts:
        by_app.setdefault(alert.app_name or alert.key.app_id, []).append(alert)
    count = len(digest.alerts)
    noun = "alert" if count == 1 else "alerts"
    window = _window(digest.window_seconds)

    lines: list[str] = []
    for app, alerts in by_app.items():
        first = alerts[0]
        lines.append(f"*{link(app_url(first), fit(app, MAX_NAME))}* ({len(alerts)})")
        lines.extend(_digest_line(a) for a in alerts)

    intro = (
        f"{count} more build {noun} arrived within {window} of this channel's first ones; "
        "flood control grouped them here."
    )
    if digest.destination.mention:
        intro = f"{digest.destination.mention} {intro}"
    # Header, intro and context take three blocks; the rest are sections of packed lines.
    sections = [section(text) for text in _pack(lines, MAX_SECTION_TEXT)][: MAX_BLOCKS - 3]
    blocks: list[Block] = [
        {"type": "header", "text": plain(cut(f"🔴 {count} more build {noun} (digest)", 150))},
        section(intro),
        *sections,
        {
            "type": "context",
            "elements": [mrkdwn(f"{count} jobs in {len(by_app)} apps · amplify-monitor digest")],
        },
    ]
    summary = ", ".join(f"{fit(app, 40)} ({len(a)})" for app, a in by_app.items())
    text = cut(f"🔴 {count} more Amplify build {noun}: {summary}", MAX_FALLBACK_TEXT)
    if digest.destination.mention:
        text = f"{digest.destination.mention} {text}"
    return SlackMessage(text=text, blocks=blocks)


# --- console ---------------------------------------------------------------------------


def _printable(text: str) -> str:
    # A terminal is an interpreter too: control characters in a commit message could move the
    # cursor or recolour the screen.
    return "".join(ch if ch.isprintable() else " " for ch in text)


def console_line(alert: Alert) -> str:
    """One readable line per alert, for `demo` and for running without Slack."""
    job = alert.job
    where = _printable(f"{alert.app_name or alert.key.app_id}/{alert.key.branch}")
    if alert.kind == "recovery":
        head = f"RECOVERED {where} job {job.job_id} succeeded"
        if alert.failed_job_id:
            head += f" (after job {alert.failed_job_id} failed)"
    else:
        head = f"{alert.status} {where} job {job.job_id}"
        if job.job_type:
            head += f" ({_printable(job.job_type)})"
        step = alert.failed_step
        if step is not None:
            head += f" in step {_printable(step.name)}"
            reason = first_line(step.status_reason)
            if reason:
                head += f": {_printable(reason)[:200]}"
    if job.commit_id:
        head += f" commit {_printable(job.commit_id[:7])}"
    message = first_line(job.commit_message)
    if message:
        head += f' "{_printable(message)[:MAX_COMMIT_LINE]}"'
    url = job_url(alert)
    if url:
        head += f" {url}"
    return head
