"""The one exception type the package raises for bad input.

The CLI turns an `InfoProError` into a single readable line and a non-zero
exit; anything else is a bug and keeps its traceback.
"""

import reprlib


class InfoProError(ValueError):
    """Bad input: the message says what was wrong and what to do instead."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM: the message says what was kept and how to continue."""

    def __init__(self, message: str = "", exit_code: int = 130, during_run: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 128 + the signal's number, as a shell reports it
        self.during_run = during_run  # the message already says what the run kept and how to continue it


def elide(text: str, limit: int = 80) -> str:
    """`text` on one line (control characters escaped) and at most `limit` characters: the middle of a
    longer one becomes "...", so that no user value can flood an error line."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) <= limit:
        return text
    keep = max(limit - 3, 2)
    return f"{text[:(keep + 1) // 2]}...{text[len(text) - keep // 2:]}"


class _BoundedRepr(reprlib.Repr):
    """reprlib's bounded walk (a few items per level, a few levels): the cost of showing a value does not
    grow with the value, so a structure built from YAML aliases (shared, exponentially large when walked)
    is shown at once."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxset = 3, 6, 6, 4, 6
        self.maxstring, self.maxother, self.maxlong = 200, 200, 200


_REPR = _BoundedRepr()


def shown(value: object, limit: int = 80) -> str:
    """`value` as an error message shows it: its repr, one line, at most `limit` characters (the middle elided)."""
    if isinstance(value, int) and value.bit_length() > 1000:  # repr refuses ints of over 4300 digits
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails: its kind says enough
        text = f"<{type(value).__name__}>"
    return elide(text, limit)
