"""Numeric flags checked when they are read: argparse `type=` functions that give a finite number in range or
refuse the word with one line that says the range.

The same function checks a config file's value (`infopro.train.args.coerce_config` applies each flag's `type`
to the value as text), so `--lr nan` and `lr: .nan` are refused alike, before anything runs.
"""

from __future__ import annotations

import argparse
import math

from .errors import shown

INT_MAX = 2**31 - 1  # every integer setting fits a C int: a larger one is a typo, and torch would overflow
SEED_MAX = 2**32 - 1  # numpy's seeds


class BadNumber(argparse.ArgumentTypeError, ValueError):
    """A number refused by a `Number`: the message reads after the flag's name ("must be >= 1, got 0");
    `expected` says in full what the value must be ("an integer >= 1"), for a config file's message."""

    def __init__(self, must: str, got: object, expected: str) -> None:
        super().__init__(f"must be {must}, got {shown(got)}")
        self.expected = expected


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Number:
    """An argparse `type=`: a word to an int or a finite float within [low, high] (either end open or absent).
    `what` names the kind of value ("a probability"), `why` says why the range is what it is."""

    def __init__(self, kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False, what: str | None = None, why: str | None = None,
                 name: str | None = None) -> None:
        if kind not in (int, float):
            raise TypeError(f"Number takes int or float, got {kind}")
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open
        self.what, self.why = what, why
        self.__name__ = name or f"{kind.__name__}_in_range"  # argparse names a type by its __name__

    @property
    def range(self) -> str:
        """'>= 1', '> 0', 'in [0, 1)', or '' when any value of the kind will do."""
        low, high = self.low, self.high
        if low is not None and high is not None:
            return f"in {'(' if self.low_open else '['}{_bound(low)}, {_bound(high)}{')' if self.high_open else ']'}"
        if low is not None:
            return f"{'>' if self.low_open else '>='} {_bound(low)}"
        if high is not None:
            return f"{'<' if self.high_open else '<='} {_bound(high)}"
        return ""

    def _phrase(self, noun: str) -> str:
        words = " ".join(w for w in (self.what or noun, self.range) if w)
        return f"{words} ({self.why})" if self.why else words

    @property
    def expected(self) -> str:
        """What a value must be, in full: 'an integer >= 1', 'a number > 0', 'a probability in [0, 1]'."""
        return self._phrase("an integer" if self.kind is int else "a number")

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)  # int("1.5") and int("nan") fail; float("1e999") is inf, refused below
        except (TypeError, ValueError, OverflowError):
            raise BadNumber(self.expected, text, self.expected) from None
        if self.kind is float and not math.isfinite(value):
            finite = self._phrase("a finite number")
            raise BadNumber(finite, value, finite)
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        if not (low_ok and high_ok):
            raise BadNumber(self._phrase(""), value, self.expected)
        if self.kind is int and abs(value) > INT_MAX:
            raise BadNumber(f"{'at most' if value > 0 else 'at least'} {INT_MAX if value > 0 else -INT_MAX}", value,
                            self.expected)
        return value

    def __repr__(self) -> str:
        return self.__name__


finite_float = Number(float, name="finite_float")
nonnegative_float = Number(float, 0.0, name="nonnegative_float")
positive_float = Number(float, 0.0, low_open=True, name="positive_float")
probability = Number(float, 0.0, 1.0, what="a probability", name="probability")
unit_interval = Number(float, 0.0, 1.0, name="unit_interval")  # [0, 1], not a probability: a mean, a momentum
open_fraction = Number(float, 0.0, 1.0, low_open=True, high_open=True, what="a fraction", name="open_fraction")
integer = Number(int, name="integer")
nonnegative_int = Number(int, 0, name="nonnegative_int")
positive_int = Number(int, 1, name="positive_int")
seed = Number(int, 0, SEED_MAX, name="seed")
mask_value = Number(int, 0, 65535, what="a mask value", name="mask_value")  # masks are 8- or 16-bit images


def flag_name(action: argparse.Action) -> str:
    """The name a message gives an argument: its long flag, or a positional's metavar."""
    longs = [o for o in action.option_strings if o.startswith("--")]
    if longs or action.option_strings:
        return max(longs or action.option_strings, key=len)
    return str(action.metavar or action.dest)
