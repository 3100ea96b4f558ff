"""Alert delivery: rendering, the outbox dispatcher, and the Slack and console notifiers.

The service needs two names: `build_dispatcher(settings, store, observer)` and the `Dispatcher`
it returns (`run`, `poke`, `drain`). Everything else is for tests and for other notifiers.
"""

from monitor.notify.factory import build_dispatcher
from monitor.notify.outbox import Dispatcher

__all__ = ["Dispatcher", "build_dispatcher"]
