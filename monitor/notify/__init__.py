"""Alert delivery: rendering, the outbox dispatcher, and the Slack and console notifiers.

The service needs two names: `build_dispatcher(settings, store, observer)` and the `Dispatcher`
it returns (`run`, `poke`, `drain`). Inside, one stage per module: `route` (alert -> channel,
mention, wanted or not, living or not), `policy` (flood control, pacing, backoff: pure time
math), `lane` (one channel's queue and what it does next), `references` (the attempt record and
the messages a send continues), `text` / `render` / `story` (pure Block Kit and console text:
safe pieces, alert messages, a job's living message), `plan` (which posts and updates tell a
notification), `slack` / `webhook` / `console` (notifiers; `slack_answers` classifies Slack's
answers), `outbox` (the dispatcher that strings them together), `factory` (settings -> all).
"""

from monitor.notify.factory import build_dispatcher
from monitor.notify.outbox import Dispatcher

__all__ = ["Dispatcher", "build_dispatcher"]
