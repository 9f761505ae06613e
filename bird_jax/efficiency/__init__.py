"""Efficiency accounting: what a run costs in time, FLOPs, energy, CO2 and money.

  timing.RunClock      wall time per phase (compile, train, eval, input-wait) and step p50/p90
  flops.step_cost      FLOPs of a compiled (pmapped) step from XLA's cost analysis, per device
  hardware.peak_flops  datasheet bf16/fp16/fp32 peaks of GPUs/TPUs, a measured matmul peak on CPU
  energy.EnergyTracker energy measured by NVML or RAPL where readable, else labelled an estimate
  accounting.RunAccounting  all of it for one training run -> workdir/efficiency.json

A resumed run reports the segment since its last start.
"""

from bird_jax.efficiency.accounting import RunAccounting, format_summary

__all__ = ["RunAccounting", "format_summary"]
