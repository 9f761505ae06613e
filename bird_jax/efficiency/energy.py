"""Energy, CO2e and cost of a run: measured where a sensor is readable, else a labelled estimate.

Sources, best first: NVIDIA GPUs through NVML (the total-energy counter, else power sampling),
CPU packages through Linux RAPL, else `estimate_watts` times wall time. A missing or unreadable
sensor never raises: the tracker moves to the next source and says why in `fallback_reason`.
One source measures a run; the NVML path counts the GPUs only, not the host CPU and memory.
"""

import contextlib
import dataclasses
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RAPL_ROOT = Path("/sys/class/powercap")
_RAPL_PACKAGE = re.compile(r"intel-rapl:(\d+)")  # top-level zones; subzones would double count


@dataclasses.dataclass(frozen=True)
class EnergyReading:
    """Energy used since `start()`, with how it was obtained."""

    kwh: float
    joules: float
    seconds: float
    average_watts: float
    method: str  # 'measured: NVML energy counter', ..., or 'estimated: 250 W x time'
    measured: bool
    sources: tuple[str, ...]  # GPU names or RAPL domains; empty for an estimate
    fallback_reason: str | None  # why better sources were skipped, None if the best one worked

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "sources": list(self.sources)}


def co2_kg(kwh: float, grid_gco2_per_kwh: float) -> float:
    """Kilograms of CO2e for `kwh` drawn from a grid emitting `grid_gco2_per_kwh` g/kWh."""
    if kwh < 0 or grid_gco2_per_kwh < 0:
        raise ValueError(f"Energy and grid intensity must be >= 0, got {kwh}, {grid_gco2_per_kwh}.")
    return kwh * grid_gco2_per_kwh / 1000.0


def cost(device_hours: float, price_per_device_hour: float) -> float:
    """Price of `device_hours` at `price_per_device_hour` (any currency)."""
    if device_hours < 0 or price_per_device_hour < 0:
        raise ValueError(
            f"Hours and price must be >= 0, got {device_hours}, {price_per_device_hour}."
        )
    return device_hours * price_per_device_hour


@dataclasses.dataclass(frozen=True)
class EnergyReport:
    """A reading with its CO2e and cost, as written to `efficiency.json`."""

    reading: EnergyReading
    num_devices: int
    grid_gco2_per_kwh: float
    price_per_device_hour: float

    @property
    def device_hours(self) -> float:
        return self.reading.seconds * self.num_devices / 3600.0

    @property
    def co2_kg(self) -> float:
        return co2_kg(self.reading.kwh, self.grid_gco2_per_kwh)

    @property
    def cost(self) -> float:
        return cost(self.device_hours, self.price_per_device_hour)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-able dict: the reading's fields, then the CO2e and cost inputs and results."""
        return {
            **self.reading.to_dict(),
            "grid_gco2_per_kwh": self.grid_gco2_per_kwh,
            "co2_kg": self.co2_kg,
            "num_devices": self.num_devices,
            "device_hours": self.device_hours,
            "price_per_device_hour": self.price_per_device_hour,
            "cost": self.cost,
        }


class _Meter:
    """One energy source: `sample(now)` updates `joules`, the total since the meter opened."""

    method: str
    measured = True
    polls = False  # whether a background thread must call sample() every sample_seconds
    sources: tuple[str, ...] = ()
    joules = 0.0

    def sample(self, now: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Releases the sensor; never raises."""


class _Estimate(_Meter):
    measured = False

    def __init__(self, watts: float, t0: float):
        self.watts, self.t0 = watts, t0
        self.method = f"estimated: {watts:g} W x time"

    def sample(self, now: float) -> None:
        self.joules = self.watts * (now - self.t0)


class _Nvml(_Meter):
    def __init__(self, nvml, handles: list, sources: tuple[str, ...]):
        self.nvml, self.handles, self.sources = nvml, handles, sources

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


class _NvmlEnergyCounter(_Nvml):
    """Differences of NVML's millijoule counter (Volta and newer); raises NVMLError if absent."""

    method = "measured: NVML energy counter"

    def __init__(self, nvml, handles: list, sources: tuple[str, ...]):
        super().__init__(nvml, handles, sources)
        self.start_mj = self._counters()

    def _counters(self) -> list[int]:
        return [self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles]

    def sample(self, now: float) -> None:
        self.joules = (
            sum(c - s for c, s in zip(self._counters(), self.start_mj, strict=True)) / 1000.0
        )


class _NvmlPowerSampling(_Nvml):
    """Trapezoid integral of NVML power (milliwatts) sampled in the tracker's thread."""

    method = "measured: NVML power sampling"
    polls = True

    def __init__(self, nvml, handles: list, sources: tuple[str, ...], t0: float):
        super().__init__(nvml, handles, sources)
        self.last_time, self.last_watts = t0, self._watts()

    def _watts(self) -> float:
        return sum(self.nvml.nvmlDeviceGetPowerUsage(h) for h in self.handles) / 1000.0

    def sample(self, now: float) -> None:
        watts = self._watts()
        self.joules += (self.last_watts + watts) / 2 * (now - self.last_time)
        self.last_time, self.last_watts = now, watts


class _Rapl(_Meter):
    """Sum of RAPL package counters (microjoules), polled so that each wrap is seen."""

    method = "measured: RAPL"
    polls = True

    def __init__(self, zones: list[Path]):
        self.files = [zone / "energy_uj" for zone in zones]
        self.ranges = [int((zone / "max_energy_range_uj").read_text()) for zone in zones]
        self.sources = tuple(_domain_name(zone) for zone in zones)
        self.last = self._counters()

    def _counters(self) -> list[int]:
        return [int(path.read_text()) for path in self.files]

    def sample(self, now: float) -> None:
        counters = self._counters()
        for last, value, wrap in zip(self.last, counters, self.ranges, strict=True):
            self.joules += (value - last + (wrap if value < last else 0)) / 1e6
        self.last = counters


def _domain_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError:
        return zone.name


def _cuda_visible(count: int) -> list[int]:
    """NVML indices named by CUDA_VISIBLE_DEVICES (all GPUs if unset or given as UUIDs)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(range(count))
    indices = []
    for entry in env.split(","):
        try:
            index = int(entry)
        except ValueError:
            return list(range(count)) if entry.strip() else indices
        if not 0 <= index < count:
            break  # CUDA ignores everything from the first invalid index on
        indices.append(index)
    return indices


def _open_nvml(device_indices: Sequence[int] | None, t0: float, reasons: list[str]) -> _Meter:
    import pynvml  # nvidia-ml-py; optional

    pynvml.nvmlInit()
    try:
        count = pynvml.nvmlDeviceGetCount()
        indices = _cuda_visible(count) if device_indices is None else list(device_indices)
        if not indices:
            raise LookupError("no NVIDIA GPU visible")
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        sources = []
        for i, handle in zip(indices, handles, strict=True):
            name = pynvml.nvmlDeviceGetName(handle)
            sources.append(f"GPU {i}: {name.decode() if isinstance(name, bytes) else name}")
        try:
            return _NvmlEnergyCounter(pynvml, handles, tuple(sources))
        except (pynvml.NVMLError, AttributeError) as e:
            reasons.append(f"NVML energy counter: {_describe(e)}")
            return _NvmlPowerSampling(pynvml, handles, tuple(sources), t0)
    except BaseException:
        _Nvml(pynvml, [], ()).close()
        raise


def _open_rapl(root: Path) -> _Meter:
    zones = [p for p in Path(root).glob("intel-rapl:*") if _RAPL_PACKAGE.fullmatch(p.name)]
    # psys, where present, is the whole platform and already contains the packages.
    zones = [z for z in zones if _domain_name(z) != "psys"]
    if not zones:
        raise LookupError(f"no package domains under {root}")
    return _Rapl(sorted(zones, key=lambda z: int(_RAPL_PACKAGE.fullmatch(z.name).group(1))))


def _describe(e: BaseException) -> str:
    if isinstance(e, ImportError):
        return "pynvml not importable (pip install nvidia-ml-py)"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class EnergyTracker:
    """Measures the energy of a run between `start()` and `stop()`, or as a context manager.

    `estimate_watts` is the assumed draw when no sensor is readable; `device_indices` picks NVML
    GPUs (default: those in CUDA_VISIBLE_DEVICES, else all); `sample_seconds` is the polling
    period for power sampling and RAPL.
    """

    def __init__(
        self,
        *,
        estimate_watts: float,
        sample_seconds: float = 1.0,
        device_indices: Sequence[int] | None = None,
        rapl_root: str | os.PathLike = RAPL_ROOT,
    ):
        if estimate_watts < 0 or sample_seconds <= 0:
            raise ValueError("estimate_watts must be >= 0 and sample_seconds > 0.")
        self.estimate_watts = estimate_watts
        self.sample_seconds = sample_seconds
        self.device_indices = device_indices
        self.rapl_root = Path(rapl_root)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self._meter: _Meter | None = None
        self._reasons: list[str] = []
        self._final: EnergyReading | None = None

    def start(self) -> "EnergyTracker":
        """Opens the best readable source and, if it needs polling, starts the sampling thread."""
        if self._t0 is not None:
            raise RuntimeError("EnergyTracker.start() was already called.")
        self._t0 = time.monotonic()
        self._meter = self._open_best()
        if self._meter.polls:
            self._thread = threading.Thread(target=self._poll, name="EnergyTracker", daemon=True)
            self._thread.start()
        return self

    def read(self) -> EnergyReading:
        """Cumulative reading since `start()`; after `stop()`, the final one."""
        if self._final is not None:
            return self._final
        if self._t0 is None:
            raise RuntimeError("Call EnergyTracker.start() before read().")
        with self._lock:
            now = time.monotonic()
            self._sample(now)
            meter, seconds = self._meter, now - self._t0
            return EnergyReading(
                kwh=meter.joules / 3.6e6,
                joules=meter.joules,
                seconds=seconds,
                average_watts=meter.joules / seconds if seconds > 0 else 0.0,
                method=meter.method,
                measured=meter.measured,
                sources=meter.sources,
                fallback_reason="; ".join(self._reasons) or None,
            )

    def stop(self) -> EnergyReading:
        """Stops sampling, releases the sensor and returns the final reading (idempotent)."""
        if self._t0 is None:
            raise RuntimeError("Call EnergyTracker.start() before stop().")
        if self._final is None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._final = self.read()
            self._meter.close()
        return self._final

    def __enter__(self) -> "EnergyTracker":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _open_best(self) -> _Meter:
        try:
            return _open_nvml(self.device_indices, self._t0, self._reasons)
        except Exception as e:
            self._reasons.append(f"NVML: {_describe(e)}")
        try:
            return _open_rapl(self.rapl_root)
        except Exception as e:
            self._reasons.append(f"RAPL: {_describe(e)}")
        return _Estimate(self.estimate_watts, self._t0)

    def _sample(self, now: float) -> None:
        """Samples the meter; a sensor failing mid-run turns the whole run into an estimate."""
        try:
            self._meter.sample(now)
        except Exception as e:
            self._reasons.append(f"{self._meter.method} failed mid-run ({_describe(e)})")
            self._meter.close()
            self._meter = _Estimate(self.estimate_watts, self._t0)
            self._meter.sample(now)

    def _poll(self) -> None:
        while not self._stop.wait(self.sample_seconds):
            with self._lock:
                self._sample(time.monotonic())
