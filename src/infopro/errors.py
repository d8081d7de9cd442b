"""The one exception type the package raises for bad input.

The CLI turns an `InfoProError` into a single readable line and a non-zero
exit; anything else is a bug and keeps its traceback.
"""


class InfoProError(ValueError):
    """Bad input: the message says what was wrong and what to do instead."""
