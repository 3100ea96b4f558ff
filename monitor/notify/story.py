"""The living message of a job (a route with `notify_start`): what it shows at each step of the
job's story, the broadcast reply a failure adds in its thread, and the "recovered" line a
failure message gains when its branch recovers. Pure functions, tested against golden files.

A job's message starts yellow ("Building"), and its final text says in words what happened:
"succeeded", "failed" (with the failed step, its reason and log link) or "was cancelled".
"""

from __future__ import annotations

from monitor.humanize import duration
from monitor.model import CANCELLED, FAILED, SUCCEED, Alert, is_terminal
from monitor.notify.render import render_failure
from monitor.notify.text import (
    MAX_BLOCKS,
    MAX_FALLBACK_TEXT,
    RECOVERED,
    Block,
    SlackMessage,
    commit_line,
    context_block,
    cut,
    first_line,
    fit,
    job_label,
    job_url,
    link,
    plain,
    section,
    titled,
    where,
)

BUILDING = "🟡"
# What a reader wants to know of an unfinished job, in words.
_DOING = {
    "CREATED": "is waiting to start",
    "PENDING": "is queued",
    "PROVISIONING": "is provisioning its build",
    "RUNNING": "is running",
    "CANCELLING": "is being cancelled",
}


def _doing(status: str) -> str:
    return _DOING.get(status, f"is {status.lower()}")


def _headline(alert: Alert, verb: str) -> str:
    job = alert.job
    line = f"Job {link(job_url(alert), job_label(alert))}"
    if job.job_type:
        line += f" ({fit(job.job_type, 30)})"
    return f"{line} {verb}"


def _message(alert: Alert, emoji: str, words: str, verb: str, title: str | None) -> SlackMessage:
    first = titled(title, alert) or f"{words} {fit(where(alert), 120)}"
    commit = commit_line(alert)
    main = _headline(alert, verb)
    blocks: list[Block] = [
        {"type": "header", "text": plain(cut(f"{emoji} {first}", 150))},
        section(main if commit is None else f"{main}\n{commit}"),
        context_block(alert),
    ]
    text = cut(f"{emoji} {first} — job {job_label(alert)} {verb}", MAX_FALLBACK_TEXT)
    return SlackMessage(text=text, blocks=blocks)


def render_story(alert: Alert, title: str | None = None) -> SlackMessage:
    """The job's message as it stands at `alert`'s status."""
    status = alert.status
    if status in (FAILED, CANCELLED):
        # The same message a failure posts on its own, without the mention (the thread reply
        # carries that): an update notifies nobody, so a ping there would be a lie.
        return render_failure(alert, None, title)
    job = alert.job
    if status == SUCCEED:
        verb = "succeeded"
        if job.duration_seconds is not None:
            verb += f" in {duration(job.duration_seconds)}"
        if alert.kind == "recovery" and alert.failed_job_id:
            failed = link(
                job_url(alert, alert.failed_job_id), job_label(alert, alert.failed_job_id)
            )
            verb += f", recovering from job {failed}"
        return _message(alert, RECOVERED, "Build succeeded:", verb + ".", title)
    if is_terminal(status):
        return _message(alert, "⚠️", f"Build {status}:", f"ended {status}.", title)
    return _message(alert, BUILDING, "Building", _doing(status) + ".", title)


def render_reply(alert: Alert, mention: str | None = None) -> SlackMessage:
    """The short reply a failure posts in its message's thread, broadcast to the channel: the
    update alone notifies nobody. It carries the route's mention."""
    step = alert.failed_step
    verb = "failed" if alert.status == FAILED else "was cancelled"
    line = f"{'🔴' if alert.status == FAILED else '⚪'} {_headline(alert, verb)}"
    if step is not None:
        line += f" in step *{fit(step.name, 40)}*"
        reason = first_line(step.status_reason)
        if reason:
            line += f": {fit(reason, 160)}"
    line += "."
    if mention:
        line = f"{mention} {line}"
    text = cut(f"{where(alert)}: job {job_label(alert)} {verb}", MAX_FALLBACK_TEXT)
    if mention:
        text = f"{mention} {text}"
    return SlackMessage(text=text, blocks=[section(line)])


def mark_recovered(message: SlackMessage, alert: Alert) -> SlackMessage:
    """A failure message as it was, plus one line saying which job recovered the branch."""
    job = alert.job
    line = f"{RECOVERED} *Recovered* by job {link(job_url(alert), job_label(alert))}"
    if job.duration_seconds is not None:
        line += f" (succeeded in {duration(job.duration_seconds)})"
    line += "."
    blocks = list(message.blocks)
    # Before the context line (the message's footer), and never past Block Kit's limit.
    at = len(blocks) - 1 if blocks and blocks[-1].get("type") == "context" else len(blocks)
    blocks.insert(at, section(line))
    if len(blocks) > MAX_BLOCKS:
        del blocks[at - 1]
    text = cut(f"{message.text} — recovered by job {job_label(alert)}", MAX_FALLBACK_TEXT)
    return SlackMessage(text=text, blocks=blocks)
