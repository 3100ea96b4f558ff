"""Rendering: an alert (or a digest of alerts) -> a Slack message (Block Kit + plain-text
fallback) or a console line. Pure functions, no I/O, tested against golden files. The living
message of a job (`notify_start`) is `story`'s; the safe pieces both use are `text`'s.
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.humanize import duration
from monitor.model import FAILED, Alert
from monitor.notify.base import Digest, Single
from monitor.notify.text import (
    MAX_BLOCKS,
    MAX_BUTTON_TEXT,
    MAX_COMMIT_LINE,
    MAX_DIGEST_REASON,
    MAX_FALLBACK_TEXT,
    MAX_FIELD_TEXT,
    MAX_NAME,
    MAX_REASON,
    MAX_SECTION_TEXT,
    RECOVERED,
    Block,
    SlackMessage,
    app_url,
    code,
    commit_line,
    context_block,
    cut,
    first_line,
    fit,
    job_label,
    job_url,
    last_success,
    link,
    log_url,
    mrkdwn,
    plain,
    section,
    slack_date,
    status_emoji,
    status_title,
    status_verb,
    titled,
    units,
    where,
)


def render_failure(
    alert: Alert, mention: str | None = None, title: str | None = None
) -> SlackMessage:
    """The message for a job that ended in an alerted status (failed, cancelled, ...).

    :param title: the route's title template; its text replaces the header's words.
    """
    job = alert.job
    status = alert.status
    step = alert.failed_step
    emoji = status_emoji(status)
    where_raw = where(alert)

    headline = f"Job {link(job_url(alert), job_label(alert))}"
    if job.job_type:
        headline += f" ({fit(job.job_type, 30)})"
    headline += f" {status_verb(status)}"
    if step is not None:
        headline += f" in step *{fit(step.name, 40)}*"
    if job.duration_seconds is not None:
        headline += f" after {duration(job.duration_seconds)}"
    headline += "."
    if mention:
        headline = f"{mention} {headline}"
    commit = commit_line(alert)
    main = headline if commit is None else f"{headline}\n{commit}"

    first = titled(title, alert) or f"{status_title(status)}: {fit(where_raw, 120)}"
    blocks: list[Block] = [
        {"type": "header", "text": plain(cut(f"{emoji} {first}", 150))},
        section(main),
    ]
    if step is not None and step.status_reason.strip():
        reason_lines = fit(step.status_reason.strip(), MAX_REASON).splitlines()[:15]
        quoted = "\n".join(f">{line}" for line in reason_lines)
        blocks.append(section(f"*Why {fit(step.name, 40)} {status_verb(step.status)}*\n{quoted}"))

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
    blocks.append(context_block(alert))

    text = f"{emoji} {first} — job {job_label(alert)}"
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
    place = fit(where(alert), 120)
    line = f"{RECOVERED} *Recovered*"
    if not in_thread:
        line += f": {place}"
    line += f" — job {link(job_url(alert), job_label(alert))}"
    if job.job_type:
        line += f" ({fit(job.job_type, 30)})"
    line += " succeeded"
    if job.duration_seconds is not None:
        line += f" in {duration(job.duration_seconds)}"
    if alert.failed_job_id:
        failed = link(job_url(alert, alert.failed_job_id), job_label(alert, alert.failed_job_id))
        line += f" (the last failure was job {failed})"
    line += "."
    commit = commit_line(alert)
    main = line if commit is None else f"{line}\n{commit}"
    text = f"{RECOVERED} Recovered: {place} — job {job_label(alert)} succeeded"
    return SlackMessage(
        text=cut(text, MAX_FALLBACK_TEXT), blocks=[section(main), context_block(alert)]
    )


def render_single(single: Single) -> SlackMessage:
    alert = single.alert
    if alert.kind == "recovery":
        return render_recovery(alert, in_thread=single.thread is not None)
    return render_failure(alert, single.destination.mention, single.destination.title)


def _window(seconds: float) -> str:
    return duration(seconds) if seconds >= 1 else f"{seconds:g}s"


def _digest_line(alert: Alert) -> str:
    emoji = RECOVERED if alert.kind == "recovery" else status_emoji(alert.status)
    verb = "recovered" if alert.kind == "recovery" else status_verb(alert.status)
    line = f"• {emoji} {code(alert.key.branch)} job {link(job_url(alert), job_label(alert))} {verb}"
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
        if units(candidate) <= limit:
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
