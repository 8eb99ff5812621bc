"""Constraints as data: what values a config field allows, declared on the field and checked by one function.

A field's metadata holds its help text and, under ``"check"``, a constraint (``Range``, ``OneOf``, ``Each``,
``Matches``, ``Arguments``); ``setting`` declares both, ``check_fields`` applies every one of a dataclass instance's
and raises ``ValueError`` naming the field, what is allowed and the value (``brief``: a bounded repr). The command
line reads the same metadata for its choices and names the flag (``commands.built``); the grid schema reads it
through the dataclasses. A range says what a value means (a positive rtol) and what a run can finish (1 + 1e-20 ==
1, so an rtol of 1e-20 never ends a bisection; a seed takes 31 bits); the upper ends are ours, generous.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from milr_core.brief import brief

def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Range:
    """A finite number (an integer if ``integer``) between ``low`` and ``high``, each end open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def holds(self, value: object) -> bool:
        if not _is_number(value) or (self.integer and not isinstance(value, int)):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        """What the rule asks, to follow "must": "be positive", "be an integer >= 1", "lie in (0, 1)"."""
        kind = "be an integer" if self.integer else "be a number"
        low, high = (f"{int(x)}" if self.integer and x is not None else f"{x:g}" if x is not None else ""
                     for x in (self.low, self.high))  # fmt: skip
        if self.low == 0 and self.low_open and self.high is None:
            return "be positive" if not self.integer else "be an integer >= 1"
        if self.high is None:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        if self.low is None:
            return f"{kind} {'<' if self.high_open else '<='} {high}"
        brackets = ("(" if self.low_open else "[", ")" if self.high_open else "]")
        if not self.integer:
            return f"lie in {brackets[0]}{low}, {high}{brackets[1]}"
        return f"{kind} in {brackets[0]}{low}, {high}{brackets[1]}"


@dataclass(frozen=True)
class OneOf:
    """One of ``choices``."""

    choices: tuple

    def holds(self, value: object) -> bool:
        return isinstance(value, str) and value in self.choices

    def describe(self) -> str:
        return f"be one of {', '.join(map(str, self.choices))}"


@dataclass(frozen=True)
class Each:
    """A list whose items each satisfy ``item``: ``length`` of them if given, else any number (at least one unless
    ``empty``); ``text`` says it in words."""

    item: Range
    text: str
    length: int | None = None
    empty: bool = False

    def holds(self, value: object) -> bool:
        if not isinstance(value, (tuple, list)) or (self.length is not None and len(value) != self.length):
            return False
        return (len(value) > 0 or self.empty) and all(map(self.item.holds, value))

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True)
class Matches:
    """A string matching ``pattern`` whole; ``text`` says it in words."""

    pattern: str
    text: str

    def holds(self, value: object) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True)
class Arguments:
    """A mapping of keyword-argument names (Python identifiers) to values, at most ``most`` of them."""

    most: int = 64

    def holds(self, value: object) -> bool:
        return isinstance(value, dict) and len(value) <= self.most and all(
            isinstance(k, str) and k.isidentifier() for k in value)  # fmt: skip

    def describe(self) -> str:
        return f"be a mapping of at most {self.most} argument names to values"


Constraint = Range | OneOf | Each | Matches | Arguments


def setting(help: str, check: Constraint | None = None, **kwargs) -> Any:
    """A dataclass field with its help text and its constraint (``default=`` and the like pass through)."""
    return field(metadata={"help": help, "check": check}, **kwargs)


POSITIVE = Range(0, low_open=True)
COUNT = Range(1, integer=True)
FRACTION = Range(0, 1, low_open=True, high_open=True)
STEPS = Range(1, 10**8, integer=True)
SEED = Range(0, 2**31 - 1, integer=True)  # torch's and our generators take 31 bits
MAX_SEEDS = 10_000  # seeds one grid or command may ask for


def check_fields(config: object, owner: str) -> None:
    """Apply every field's constraint (``None`` passes where the default is None); ValueError naming the field."""
    for f in fields(config):
        rule, value = f.metadata.get("check"), getattr(config, f.name)
        if rule is None or (value is None and f.default is None):
            continue
        if not rule.holds(value):
            raise ValueError(f"{owner}{'.' if owner else ''}{f.name} must {rule.describe()}, got {brief(value)}")


def check_seeds(seeds, where: str = "seeds") -> None:
    """Seeds: distinct integers in [0, 2^31), at least one and at most ``MAX_SEEDS``."""
    seeds = list(seeds)
    if not 1 <= len(seeds) <= MAX_SEEDS:
        raise ValueError(f"{where} asks for {len(seeds)} seeds; allowed: 1 to {MAX_SEEDS}")
    bad = next((s for s in seeds if not SEED.holds(s)), None)
    if bad is not None or len(set(seeds)) != len(seeds):
        why = f"{brief(bad)} is not" if bad is not None else "they must be distinct and each"
        raise ValueError(f"{where}: {why} an integer in [0, 2^31)")


def check_each(cls: type, name: str, values, where: str) -> None:
    """Every item of ``values`` against the constraint of the field ``name`` of ``cls`` (a grid's depths, widths)."""
    rule = next(f for f in fields(cls) if f.name == name).metadata["check"]
    bad = next((v for v in values if not rule.holds(v)), None)
    if bad is not None:
        raise ValueError(f"{where}: every entry must {rule.describe()}, got {brief(bad)}")
