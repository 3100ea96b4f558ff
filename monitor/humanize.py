"""Durations as people read them: the two styles the tool prints, in one place.

`duration(90)` is "1m 30s" (Slack messages, sentences); `duration(90, compact=True)` is
"1m30s" (CI logs, where columns line up). Pure.
"""

from __future__ import annotations


def duration(seconds: float, *, compact: bool = False) -> str:
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if compact else f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if compact:
        return f"{hours}h{minutes:02d}m"
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
