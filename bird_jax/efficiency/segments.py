"""A run's cost over all its processes and all its segments (a preempted run resumes in a new one).

Each process measures only its own devices (or its host), so energy, CO2e, cost and device-hours
are summed over processes. A resumed run appends its segment to the `segments` list of the
`efficiency.json` it finds and writes `total`: the sums over every segment, including work a
restart from an older checkpoint repeated (it was paid for). A run that starts from step 0
begins a new history. The train loop records at every checkpoint, so a segment that is killed
(a crash, SIGKILL) keeps its figures up to its last checkpoint.
"""

from typing import Any

import jax
import numpy as np

SUMMED_ENERGY = ("kwh", "joules", "co2_kg", "device_hours", "cost")


def across_processes(energy: dict[str, Any]) -> dict[str, Any]:
    """This process's energy dict with the SUMMED_ENERGY fields summed over all processes and
    `measured` true only if every process measured. A collective: every process must call it."""
    if jax.process_count() == 1:
        return {**energy, "processes": 1}
    from jax.experimental import multihost_utils

    local = np.array([*(energy[k] for k in SUMMED_ENERGY), float(energy["measured"])])
    gathered = np.asarray(multihost_utils.process_allgather(local))  # [processes, fields]
    totals = gathered.sum(axis=0)
    return {
        **energy,
        **{k: float(v) for k, v in zip(SUMMED_ENERGY, totals, strict=False)},
        "measured": bool(gathered[:, -1].min()),
        "num_devices": jax.device_count(),
        "processes": jax.process_count(),
    }


def _segment(summary: dict[str, Any], start_step: int) -> dict[str, Any]:
    """The figures of one segment that add up over segments."""
    energy = summary["energy"]
    return {
        "start_step": start_step,
        "end_step": start_step + summary["trained_steps"],
        "trained_steps": summary["trained_steps"],
        "wall_s": summary["time"]["wall_s"],
        **{k: energy[k] for k in SUMMED_ENERGY},
        "measured": energy["measured"],
    }


def with_history(
    summary: dict[str, Any], previous: dict[str, Any] | None, start_step: int
) -> dict[str, Any]:
    """`summary` (this segment) plus `segments` (every segment so far) and `total` (their sums).

    Time and energy to the target accuracy count from the run's start, across segments.
    """
    earlier = (previous or {}).get("segments", []) if start_step > 0 else []
    segments = [*earlier, _segment(summary, start_step)]
    total = {
        key: sum(segment[key] for segment in segments)
        for key in ("trained_steps", "wall_s", *SUMMED_ENERGY)
    }
    total["measured"] = all(segment["measured"] for segment in segments)
    total["segments"] = len(segments)
    target = summary["target"]
    earlier_target = (previous or {}).get("target") if earlier else None
    if earlier_target is not None:
        target = earlier_target
    elif target is not None and earlier:
        target = {
            **target,
            "seconds": target["seconds"] + sum(s["wall_s"] for s in earlier),
            "kwh": target["kwh"] + sum(s["kwh"] for s in earlier),
        }
    return {**summary, "target": target, "segments": segments, "total": total}
