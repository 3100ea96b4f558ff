"""Which Slack calls tell one notification: a pure plan of posts and updates, which the bot
notifier carries out in order.

- A failure (no living message): one post. A recovery: the failure's message gains a
  "recovered" line (an update) and the recovery is posted in its thread.
- A living destination (`notify_start`): the job's one message is posted at its first step and
  updated at every later one; a failure or cancellation the route asked for adds a short reply
  in that message's thread, broadcast to the channel, because an update notifies nobody.
- A digest: one post.

Every post carries the alert's dedup key in its metadata (the reply: the key plus "/reply"),
which is how a resend after a crash finds out that Slack already has it.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.model import CANCELLED, FAILED
from monitor.notify.base import Digest, Notification, Single
from monitor.notify.render import render_digest, render_single
from monitor.notify.slack_answers import Receipt
from monitor.notify.story import mark_recovered, render_reply, render_story
from monitor.notify.text import SlackMessage


@dataclass(frozen=True)
class Post:
    """chat.postMessage.

    :param thread: reply in this message's thread; None for the channel itself.
    :param in_main_thread: reply in the thread of the message this plan posted or updated
        before (the living message), known only once that step is done.
    :param main: this post becomes the message that tells the job's story.
    """

    message: SlackMessage
    dedup: str
    thread: Receipt | None = None
    in_main_thread: bool = False
    broadcast: bool = False
    main: bool = True


@dataclass(frozen=True)
class Update:
    """chat.update of a message posted before.

    :param main: the message is the job's own (living): if it was deleted a new one is posted,
        and if it can no longer be edited the new text goes in its thread. Otherwise (a failure
        message marked recovered) such a message is left as it is.
    """

    target: Receipt
    message: SlackMessage
    dedup: str
    main: bool = True


Step = Post | Update


def plan(notification: Notification) -> list[Step]:
    if isinstance(notification, Digest):
        return [Post(render_digest(notification), notification.dedup_key)]
    return _single(notification)


def _single(single: Single) -> list[Step]:
    alert, destination = single.alert, single.destination
    key = alert.dedup_key
    steps: list[Step] = []
    if alert.kind == "recovery" and single.failed is not None:
        shown = SlackMessage.decode(single.failed.payload)
        if shown is not None:
            steps.append(
                Update(
                    Receipt.decode(single.failed.receipt),
                    mark_recovered(shown, alert),
                    key,
                    main=False,
                )
            )
    if not destination.living:
        thread = Receipt.decode(single.thread) if single.thread else None
        steps.append(Post(render_single(single), key, thread=thread))
        return steps

    story = render_story(alert, destination.title)
    if single.message is not None:
        steps.append(Update(Receipt.decode(single.message.receipt), story, key))
    else:
        steps.append(Post(story, key))
    told = alert.kind != "recovery" and alert.status in destination.statuses
    if told and alert.status in (FAILED, CANCELLED):
        reply = render_reply(alert, destination.mention)
        steps.append(Post(reply, f"{key}/reply", in_main_thread=True, broadcast=True, main=False))
    return steps
