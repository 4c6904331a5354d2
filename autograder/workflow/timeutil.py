"""nbgrader keeps times as naive UTC; course.yaml may give naive (read as UTC) or aware times."""

from __future__ import annotations

import datetime as dt
from typing import overload


@overload
def as_utc(moment: dt.datetime) -> dt.datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """An aware UTC time; a naive one is taken to be UTC already."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


@overload
def as_utc_naive(moment: dt.datetime) -> dt.datetime: ...
@overload
def as_utc_naive(moment: None) -> None: ...
def as_utc_naive(moment: dt.datetime | None) -> dt.datetime | None:
    """What nbgrader's gradebook stores."""
    utc = as_utc(moment)
    return utc.replace(tzinfo=None) if utc else None
