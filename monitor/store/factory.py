"""Turns the `[state]` settings into an open Store: SQLite by default, Redis when asked.

The one place that knows which backends exist; redis is imported only when chosen, so the
package stays optional for everyone on SQLite.
"""

from __future__ import annotations

from monitor.config import StateSettings
from monitor.store.base import Store
from monitor.store.codec import CodecError, StoreError
from monitor.store.sqlite import SqliteStore

__all__ = ["CodecError", "StoreError", "open_store"]


async def open_store(settings: StateSettings) -> Store:
    """Open the backend `settings.backend` names, schema checked and ready.

    :raises StoreError: the backend cannot be opened, or redis is chosen but not installed.
    """
    if settings.backend == "redis":
        if settings.redis_url is None:  # config validation already refuses this
            raise StoreError("state.redis_url is required with backend = 'redis'")
        # Imported here, not at the top: redis is an optional dependency.
        try:
            from monitor.store.redis import RedisStore
        except ImportError as exc:
            if exc.name is None or exc.name.split(".")[0] != "redis":
                raise
            raise StoreError(
                "state.backend = 'redis' needs the redis package: "
                "pip install 'amplify-monitor[redis]'"
            ) from None
        return await RedisStore.open(settings.redis_url.get_secret_value(), settings.redis_prefix)
    return await SqliteStore.open(settings.path)
