"""The one exception type the package raises for bad input.

The CLI turns an `InfoProError` into a single readable line and a non-zero
exit; anything else is a bug and keeps its traceback.
"""


class InfoProError(ValueError):
    """Bad input: the message says what was wrong and what to do instead."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM: the message says what was kept and how to continue."""

    def __init__(self, message: str = "", exit_code: int = 130, during_run: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 128 + the signal's number, as a shell reports it
        self.during_run = during_run  # the message already says what the run kept and how to continue it
