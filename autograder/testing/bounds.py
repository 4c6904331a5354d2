"""Bounds on everything that comes from a worker, applied on the trusted side.

The worker runs student code, so whatever it cuts for us is only a courtesy: here each
text is cut before it is stored or shown, each reply is refused above a size tied to the
request, and a grading run's results and feedback stay bounded whatever a submission does.
"""

from __future__ import annotations

MESSAGE_CHARS = 4000       # one test's failure message (its error text, traceback included)
ERROR_PART_CHARS = 2000    # an exception's message, and its traceback, from the worker
NAME_CHARS = 200           # a name, a type name, a device name
NAMES = 5000               # top-level names of a notebook we keep
NOTES = 20                 # notes about one submission (forbidden APIs found, ...)
NOTE_CHARS = 600
# A reply may hold up to this many bytes, or REPLY_PER_SENT times what the request sent if that
# is more: outputs of the calls the tests make are at most a few times their inputs or the
# model's parameters (tiny models), and far below this.
REPLY_BASE_BYTES = 64 << 20
REPLY_PER_SENT = 16


def cut(text: object, limit: int) -> str:
    """`text` as a string of at most about `limit` characters, saying how much was cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40)
    return f"{text[:keep]} … [{len(text) - keep} characters cut]"


def bounded_notes(notes: list[str]) -> list[str]:
    """At most NOTES notes of at most NOTE_CHARS each, saying how many more there were."""
    kept = [cut(note, NOTE_CHARS) for note in notes[:NOTES]]
    if len(notes) > NOTES:
        kept.append(f"... and {len(notes) - NOTES} more")
    return kept


def reply_limit(sent_bytes: int) -> int:
    return max(REPLY_BASE_BYTES, REPLY_PER_SENT * sent_bytes)


def bounded_names(names: object) -> dict[str, str]:
    """The notebook's top-level names as the worker reported them, checked and bounded."""
    if not isinstance(names, dict):
        return {}
    kept = {}
    for name, kind in list(names.items())[:NAMES]:
        if isinstance(name, str) and len(name) <= NAME_CHARS:
            kept[name] = cut(kind, NAME_CHARS)
    return kept
