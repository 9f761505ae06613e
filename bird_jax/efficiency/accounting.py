"""What one run cost: gathered while it trains, written to efficiency.json and TensorBoard.

The train loop creates a `RunAccounting` at start (it starts the clock and the energy tracker),
wraps its phases in `clock.phase`, reports each step with `clock.step_done`, the compiled step
with `measure_step`, each evaluation with `evaluated`, calls `record` at every checkpoint and
`finish` at the end.
"""

from __future__ import annotations

import math
import resource
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from bird_jax import precision
from bird_jax.efficiency import energy, flops, hardware, segments
from bird_jax.efficiency.timing import RunClock
from bird_jax.workdir import Workdir

DEFAULT_ACCELERATOR_WATTS = 300.0  # per GPU/TPU, when config.efficiency.estimate_watts is 0
DEFAULT_CPU_WATTS = 65.0  # per CPU process (host), likewise


def estimate_watts(config_watts: float, devices: list[jax.Device]) -> float:
    """The power assumed when no sensor is readable: the config's, or a per-device default."""
    if config_watts > 0:
        return config_watts
    if devices[0].platform == "cpu":
        return DEFAULT_CPU_WATTS
    return DEFAULT_ACCELERATOR_WATTS * len(devices)


def _memory(device: jax.Device) -> dict[str, int | None]:
    """Peak device memory where the backend reports it (GPU/TPU), and the host's peak RSS."""
    stats = device.memory_stats() or {}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "peak_bytes_per_device": stats.get("peak_bytes_in_use"),
        "host_peak_rss_bytes": rss_kib * 1024,
    }


class RunAccounting:
    """Time, throughput, FLOPs, MFU, memory, energy, CO2e and cost of one training run."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        *,
        images_per_step: int,
        workdir: Workdir,
        start_step: int,
    ):
        self.workdir = workdir
        self.start_step = start_step
        self.previous = workdir.read_efficiency()  # the segments before this one
        self.settings = config.efficiency
        self.precision = precision.resolve(config.precision)
        self.images_per_step = images_per_step
        self.devices = jax.local_devices()
        self.clock = RunClock()
        self.tracker = energy.EnergyTracker(
            estimate_watts=estimate_watts(self.settings.estimate_watts, self.devices)
        ).start()
        self.step_cost: flops.StepCost | None = None
        self.target: dict[str, Any] | None = None

    def measure_step(
        self, p_train_step: Callable, state: Any, batch: Any, count_with: Callable | None = None
    ) -> None:
        """FLOPs of the compiled train step (call after its first run: the compile is reused);
        `count_with`: the same step with its accumulation loop unrolled (flops.step_cost)."""
        self.step_cost = flops.step_cost(p_train_step, state, batch, count_with=count_with)

    def evaluated(self, step: int, accuracy: float) -> None:
        """Records when validation accuracy first reaches efficiency.target_accuracy."""
        goal = self.settings.target_accuracy
        if goal > 0 and self.target is None and accuracy >= goal:
            reading = self.tracker.read()
            self.target = {
                "target_accuracy": goal,
                "reached_at_step": step,
                "seconds": self.clock.summary()["wall_s"],
                "kwh": reading.kwh,
            }

    def summary(self, trained_steps: int) -> dict[str, Any]:
        """Everything efficiency.json holds (floats; None where unknown)."""
        times = self.clock.summary()
        step_s = times["step_p50_s"]
        images_per_s = self.images_per_step / step_s if math.isfinite(step_s) else None
        peak, peak_source = hardware.peak_flops(self.devices[0], self.precision)
        cost = self.step_cost
        achieved_mfu = None
        if cost is not None and peak and images_per_s:
            achieved_mfu = hardware.mfu(cost.flops_per_device, step_s, peak)
        report = energy.EnergyReport(
            self.tracker.read(),
            num_devices=len(self.devices),
            grid_gco2_per_kwh=self.settings.grid_gco2_per_kwh,
            price_per_device_hour=self.settings.price_per_device_hour,
        )
        num_devices = len(self.devices)
        return {
            "time": times,
            "trained_steps": trained_steps,
            "throughput": {
                "images_per_s": images_per_s,
                "images_per_s_per_device": images_per_s / num_devices if images_per_s else None,
                "images_per_step": self.images_per_step,
                "devices": num_devices,
                "device_kind": self.devices[0].device_kind,
            },
            "flops": {
                "per_step_per_device": cost.flops_per_device if cost else None,
                "per_step": cost.total if cost else None,
                "per_image": cost.total / self.images_per_step if cost else None,
                "peak_per_device": peak,
                "peak_source": peak_source,
                "mfu": achieved_mfu,
            },
            "precision": self.precision,
            "memory": _memory(self.devices[0]),
            "energy": report.to_dict(),
            "target": self.target,
        }

    def kwh_so_far(self) -> float:
        """Energy of the run until now: earlier segments' total plus this segment (this
        process's devices or host)."""
        earlier = self.previous.get("total", {}).get("kwh", 0.0) if self.start_step else 0.0
        return earlier + self.tracker.read().kwh

    def record(self, step: int) -> dict[str, Any]:
        """Writes efficiency.json as of `step`: this segment so far, every earlier segment and
        their total. Called at every checkpoint, so a killed run keeps its cost up to its last
        checkpoint. A collective: every process must call it."""
        summary = self.summary(step - self.start_step)
        summary["energy"] = segments.across_processes(summary["energy"])
        if jax.process_index() == 0:
            summary = segments.with_history(summary, self.previous, start_step=self.start_step)
            self.workdir.write_efficiency(summary)
        return summary

    def finish(self, step: int) -> dict[str, Any]:
        """Stops the tracker and records the segment's final figures (a collective)."""
        self.tracker.stop()
        return self.record(step)


def format_summary(summary: dict[str, Any]) -> str:
    """One line for the log: time split, step time, images/s, MFU, energy, CO2e, cost."""
    times, energy_ = summary["time"], summary["energy"]
    parts = [
        f"wall {times['wall_s']:.1f} s (compile {times['compile_s']:.1f}, eval "
        f"{times['eval_s']:.1f}, input wait {times['input_wait_s']:.1f}, checkpoints "
        f"{times['checkpoint_s']:.1f})",
        f"step p50 {1000 * times['step_p50_s']:.1f} ms / p90 {1000 * times['step_p90_s']:.1f} ms",
    ]
    if summary["throughput"]["images_per_s"]:
        parts.append(f"{summary['throughput']['images_per_s']:.1f} images/s")
    if summary["flops"]["mfu"] is not None:
        parts.append(f"MFU {summary['flops']['mfu']:.1%} ({summary['flops']['peak_source']})")
    parts.append(
        f"{energy_['kwh'] * 1000:.2f} Wh {energy_['method']}, {energy_['co2_kg'] * 1000:.1f} g "
        f"CO2e, cost {energy_['cost']:.4f}"
    )
    total = summary.get("total")
    if total and total["segments"] > 1:
        parts.append(
            f"run total over {total['segments']} segments: {total['trained_steps']} steps, "
            f"wall {total['wall_s']:.1f} s, {total['kwh'] * 1000:.2f} Wh"
        )
    return "; ".join(parts)
