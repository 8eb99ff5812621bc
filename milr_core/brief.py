"""``brief(value)``: how every error message quotes a value it was given, bounded in length and in work.

A message that reprs what the user wrote can be as large as what they wrote: a 597-byte YAML alias bomb
expands to 10^9 strings, and ``repr`` of it never returns. ``brief`` looks at most a few levels and items
deep (``reprlib``), cuts the text at ``LIMIT`` characters and then says how large the value was::

    brief("abc")          -> 'abc'
    brief("x" * 10_000)   -> 'xxxxxxxxxxxx...' (10000 characters)
    brief(list(range(9))) -> [0, 1, 2, 3, ...] (9 items)

It imports nothing of the engine, so every module (``config`` included) may use it.
"""

from __future__ import annotations

import reprlib

LIMIT = 80  # characters of a quoted value, the ellipsis included

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 2, 4, 4, 4
_SHORT.maxset = _SHORT.maxfrozenset = _SHORT.maxdeque = _SHORT.maxarray = 4
_SHORT.maxstring, _SHORT.maxother = LIMIT, LIMIT
_SHORT.maxlong = 40


def _size_of(value: object) -> str:
    """How large ``value`` is, in words: "N characters", "N items", "N digits", or its type."""
    if isinstance(value, (str, bytes)):
        return f"{len(value)} characters" if isinstance(value, str) else f"{len(value)} bytes"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    try:
        return f"{len(value)} items"  # type: ignore[arg-type]
    except TypeError:
        return type(value).__name__


def clip(text: str, limit: int = 2 * LIMIT) -> str:
    """The first line of a message (an exception's, which may quote input), cut at ``limit`` characters."""
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else f"{line[: limit - 3]}..."


def brief(value: object, limit: int = LIMIT) -> str:
    """``repr(value)`` if it is short, else its first characters, "...", and how large the value is."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value).bit_length() > 128:
        return f"an integer of {_size_of(value)}"  # repr of a huge int is slow (and refused past 4300 digits)
    try:
        text = _SHORT.repr(value)
    except Exception:  # a repr that fails says so, the message still prints
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        return f"{text[: limit - 3]}... ({_size_of(value)})"
    return f"{text} ({_size_of(value)})" if "..." in text else text  # reprlib left items out: say how many


def listing(values, most: int = 5, bare: bool = False) -> str:
    """Values quoted by ``brief`` (``bare``: strings as they are, cut short) joined with commas, at most ``most``."""
    values = list(values)

    def quote(value: object) -> str:
        if bare and isinstance(value, str) and value.isprintable():
            return clip(value, LIMIT // 2)
        return brief(value, LIMIT // 2)

    shown = ", ".join(quote(value) for value in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")
