"""How late, in words: for late notes, results and the report."""

from __future__ import annotations

import datetime as dt


def describe_duration(late_by: dt.timedelta) -> str:
    """'2 days 3 h', '4 h 12 min', '5 min', '1 s': how late, in words."""
    seconds = int(late_by.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} day{'s' if days > 1 else ''} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{max(seconds, 1)} s"
