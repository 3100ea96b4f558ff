"""Alert delivery: rendering, the outbox dispatcher, and the Slack and console notifiers.

The service needs two names: `build_dispatcher(settings, store, observer)` and the `Dispatcher`
it returns (`run`, `poke`, `drain`). Inside, one stage per module: `route` (alert -> channel,
mention, wanted or not), `policy` (flood control, pacing, backoff: pure time math), `render`
(pure Block Kit and console text), `slack` / `console` (notifiers that classify every answer),
`outbox` (the dispatcher that strings them together), `factory` (settings -> all of that).
"""

from monitor.notify.factory import build_dispatcher
from monitor.notify.outbox import Dispatcher

__all__ = ["Dispatcher", "build_dispatcher"]
