"""What the shard tools' command lines share: numeric ranges checked at parse time, one-line usage errors.

A Range is defined once, beside the config field it bounds (ShardConfig.LIMITS); the config checks it for
library callers and `number()` checks it while argparse parses, so `--block-bases 0` never gets to run.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric setting: a config field (its LIMITS table, here and in gene_ae) or a
    command-line option (`number`). The one definition both packages use."""

    low: float
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = False  # high itself excluded

    def __contains__(self, value: float) -> bool:
        if value < self.low or (self.low_open and value == self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def check(self, name: str, value: float) -> None:
        """Raise ValueError unless value is a finite number in range (bools and NaN are not numbers here)."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not (ok and value in self):
            raise ValueError(f"{name} must be {self}, got {value!r}")

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


def number(kind: type[int] | type[float], limit: Range) -> Callable[[str], int | float]:
    """An argparse `type=`: text -> int or float, refused unless within limit."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
            limit.check("value", value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a number'} {limit}, got {text!r}"
            ) from None
        return value

    return parse


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, except for required options, which have none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.required else super()._get_help_string(action)


class _Version(argparse._VersionAction):
    """--version whose text may be a function, called only when --version is asked (reading the package's
    metadata costs every other command start-up time)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if callable(self.version):
            self.version = f"%(prog)s {self.version()}"
        super().__call__(parser, namespace, values, option_string)


class Parser(argparse.ArgumentParser):
    """argparse with every default shown in --help, --version, and usage errors as one line with exit status 1.
    `version`: the text, or a function giving it when --version is asked."""

    def __init__(self, *args, version, **kwargs) -> None:
        super().__init__(*args, formatter_class=_DefaultsShown, **kwargs)
        shown = version if callable(version) else f"%(prog)s {version}"
        self.add_argument("--version", action=_Version, version=shown)

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see --help)\n")
