"""Where a run's wall time goes: compile, train, eval and input-wait, plus step-time percentiles.

The train loop wraps each phase in `clock.phase(name)`. Step times come from `clock.step_done`,
called once per step with that step's output: it blocks on the PREVIOUS step's output, so one
step stays in flight (dispatch is still asynchronous) and the interval between two such blocks
is one step's device time in steady state.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

PHASES = ("compile", "train", "eval", "input_wait", "checkpoint")


class RunClock:
    """Accumulates seconds per phase and per-step durations."""

    def __init__(self, clock=time.perf_counter):
        self._clock = clock
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.step_seconds: list[float] = []
        self._in_flight: Any = None
        self._last_done: float | None = None
        self._started = clock()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Adds the time spent inside the block to phase `name`."""
        if name not in PHASES:
            raise ValueError(f"Unknown phase {name!r}; phases are {PHASES}.")
        start = self._clock()
        try:
            yield
        finally:
            self.seconds[name] += self._clock() - start

    def now(self) -> float:
        """The clock's current reading, in seconds."""
        return self._clock()

    def step_done(self, output: Any) -> None:
        """Records a step: waits for the previous step's output and times the interval."""
        if self._in_flight is not None:
            jax.block_until_ready(self._in_flight)
            now = self._clock()
            if self._last_done is not None:
                self.step_seconds.append(now - self._last_done)
            self._last_done = now
        self._in_flight = output

    def restart_steps(self) -> None:
        """Forgets the step in flight (e.g. after an evaluation), so pauses are not step time."""
        if self._in_flight is not None:
            jax.block_until_ready(self._in_flight)
        self._in_flight, self._last_done = None, None

    def summary(self) -> dict[str, float]:
        """Total wall time, seconds per phase, and step-time p50/p90 (NaN before two steps)."""
        steps = np.asarray(self.step_seconds, dtype=np.float64)
        p50, p90 = np.percentile(steps, [50, 90]) if len(steps) else (np.nan, np.nan)
        return {
            "wall_s": self._clock() - self._started,
            **{f"{name}_s": self.seconds.get(name, 0.0) for name in PHASES},
            "step_p50_s": float(p50),
            "step_p90_s": float(p90),
            "timed_steps": len(steps),
        }
