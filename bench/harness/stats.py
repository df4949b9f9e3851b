"""Percentiles, summaries over rounds, and the alternating order of rounds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Spread", "ms", "percentile", "rotation"]

T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..100 (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q / 100))
    return ordered[rank - 1]


def ms(seconds: float, digits: int = 1) -> str:
    """Seconds as milliseconds ("12.3 ms"), or as seconds from 1 s up."""
    if abs(seconds) >= 1:
        return f"{seconds:,.2f} s"
    return f"{seconds * 1000:,.{digits}f} ms"


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of per-round figures, with their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    @property
    def relative(self) -> float:
        """(max - min) / median: how much the rounds disagree."""
        return (self.high - self.low) / self.median if self.median else math.nan


def rotation(items: Sequence[T], round_number: int) -> list[T]:
    """`items` in the order of round `round_number` (0-based): each round a different one
    goes first, so that drift on a shared machine hits every contestant alike."""
    if not items:
        return []
    shift = round_number % len(items)
    return [*items[shift:], *items[:shift]]
