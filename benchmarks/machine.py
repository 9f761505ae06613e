"""What every benchmark reports about the machine, and how it summarises repeats."""

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or 'n/a' where the OS has none."""
    try:
        return " ".join(f"{load:.2f}" for load in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, falling back to `platform.processor()`."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def summary(values: list[float]) -> dict[str, Any]:
    """Median, min, max and all values, rounded for reports."""
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "all": [round(v, 2) for v in values],
    }


def throughput_fields(images_per_s: list[float], batch_size: int) -> dict[str, Any]:
    """The images/s fields of a train-step benchmark record (ours and torch alike)."""
    rates = summary(images_per_s)
    return {
        "ms_per_step_median": round(1000 * batch_size / statistics.median(images_per_s), 1),
        **{f"images_per_s_{key}": value for key, value in rates.items()},
    }


def repeat_seconds(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of `fn` (which must wait for its result), after one
    warm-up call (for JAX, the compile)."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds
