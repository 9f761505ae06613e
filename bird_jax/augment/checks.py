"""Parameter checks shared by the augmentation ops: each raises ValueError naming the parameter."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

IntOrRange = int | tuple[int, int]
Range = float | tuple[float, float]


def is_int(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: int, low: int, high: int) -> None:
    """ValueError unless `value` is an integer in [low, high]."""
    if not is_int(value) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}.")


def int_range(name: str, value: IntOrRange, low: int, high: int) -> tuple[int, int]:
    """`value` (an int or a (lo, hi) pair) as a pair inside [low, high]; ValueError otherwise."""
    pair = (value, value) if is_int(value) else value
    valid = (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and all(is_int(v) for v in pair)
        and low <= pair[0] <= pair[1] <= high
    )
    if not valid:
        raise ValueError(
            f"{name} must be an int or an (lo, hi) pair of ints with {low} <= lo <= hi <= {high}, "
            f"got {value!r}."
        )
    return int(pair[0]), int(pair[1])


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_ordered(pair: Sequence, low: float, high: float) -> bool:
    return len(pair) == 2 and all(map(_is_number, pair)) and low <= pair[0] <= pair[1] <= high


def check_number(
    name: str, value: float, low: float, high: float = math.inf, *, open_low: bool = False
) -> float:
    """`value` as a float if it is a number in [low, high] (or (low, high]); else ValueError."""
    interval = f"{'(' if open_low else '['}{low}, {high}]"
    if not _is_number(value):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")
    if not (low < value if open_low else low <= value) or not value <= high:
        raise ValueError(f"{name} must be in {interval}, got {value}.")
    return float(value)


def check_range(name: str, value: Range, low: float, high: float) -> tuple[float, float]:
    """`value` (a number or a (lo, hi) pair) as a pair with low <= lo <= hi <= high."""
    pair = value if isinstance(value, tuple | list) else (value, value)
    if not _is_ordered(pair, low, high):
        raise ValueError(
            f"{name} must be a number or a (lo, hi) pair with {low} <= lo <= hi <= {high}, "
            f"got {value!r}."
        )
    return float(pair[0]), float(pair[1])


def check_ordered(
    names: tuple[str, str], values: tuple[float, float], low: float, high: float
) -> tuple[float, float]:
    """Two params, a lower and an upper bound, as floats with low <= lower <= upper <= high."""
    if not _is_ordered(values, low, high):
        raise ValueError(
            f"{names[0]} and {names[1]} must be numbers with {low} <= {names[0]} <= {names[1]} "
            f"<= {high}, got {values[0]!r} and {values[1]!r}."
        )
    return float(values[0]), float(values[1])
