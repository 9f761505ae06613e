"""FLOPs of a compiled JAX program, read from XLA's cost analysis.

XLA counts the operations of the optimised program it will run: 2 per multiply-add of a matmul or
convolution (taps that fall on 'SAME' padding are not counted) plus the elementwise work
(activations, normalisation, the optimizer update, dtype conversions). For a train step this is
the hardware's work, not a model-only estimate.

A pmapped or sharded program is compiled once per device, so XLA reports the FLOPs of *one*
device; `StepCost.total` multiplies by the number of devices the program runs on.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from absl import logging


@dataclasses.dataclass(frozen=True)
class StepCost:
    """FLOPs of one call of a compiled program: per device and over all its devices."""

    flops_per_device: float
    num_devices: int

    @property
    def total(self) -> float:
        return self.flops_per_device * self.num_devices


def step_cost(fn: Callable, *args: Any, **kwargs: Any) -> StepCost | None:
    """Compiles `fn` for these arguments (arrays or `jax.ShapeDtypeStruct`s) and reads its cost.

    `fn` may be a plain function (it is jitted), a jitted function or a `jax.pmap`-ed one; nothing
    runs and no buffer is donated. Returns None when the backend offers no cost analysis.
    """
    lowerable = fn if hasattr(fn, "lower") else jax.jit(fn)
    compiled = lowerable.lower(*args, **kwargs).compile()
    flops = _flops(compiled.cost_analysis())
    if flops is None:
        logging.log_first_n(
            logging.WARNING,
            "XLA gave no FLOP count on %s: FLOPs unknown.",
            1,
            jax.default_backend(),
        )
        return None
    shardings = jax.tree.leaves((compiled.input_shardings, compiled.output_shardings))
    devices = {device for sharding in shardings for device in sharding.device_set}
    return StepCost(flops_per_device=flops, num_devices=max(len(devices), 1))


def _flops(cost_analysis: Any) -> float | None:
    """The 'flops' entry of a cost analysis: a dict, or (older JAX) a list holding one dict.

    XLA reports -1 where it cannot count (seen on GPU in older releases): that is None here too.
    """
    if isinstance(cost_analysis, (list, tuple)):
        cost_analysis = cost_analysis[0] if cost_analysis else None
    flops = (cost_analysis or {}).get("flops")
    return None if flops is None or flops < 0 else float(flops)
