"""FLOPs of a JAX program, read from XLA's cost analysis of the program as lowered.

XLA counts 2 per multiply-add of a matmul or convolution (taps that fall on 'SAME' padding are not
counted) plus the elementwise work (activations, normalisation, the optimizer update, dtype
conversions). For a train step this is the whole step's work, not a model-only estimate.

The count is taken before XLA's optimisations: after them, GPU programs call cuBLAS and cuDNN as
custom calls, which the analysis of the compiled program counts as nothing (on an H200 it gave
0.84 GFLOP per image for ConvNeXt-T's train step, about a thirtieth of the real work). On CPU the
two counts agree.

`StepCost` holds the FLOPs of *one* device; `StepCost.total` multiplies by the number of devices
the program runs on.
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


def step_cost(
    fn: Callable, *args: Any, count_with: Callable | None = None, **kwargs: Any
) -> StepCost | None:
    """Lowers and compiles `fn` for these arguments (arrays or `jax.ShapeDtypeStruct`s) and reads
    its cost.

    `fn` may be a plain function (it is jitted), a jitted function or a `jax.pmap`-ed one; nothing
    runs and no buffer is donated. Returns None when the backend offers no cost analysis. A pmapped
    program is lowered as what each device runs; a jitted one as the whole computation, which
    XLA's partitioner then splits evenly over its devices (a data-parallel step; a `shard_map`
    inside a jitted function is counted as jit's).

    XLA counts a loop's body once, whatever its trip count. `count_with`, the same kind of
    function doing the same work with its loops unrolled, is counted instead (lowered only, not
    compiled); `fn` still gives the devices.
    """
    lowerable = _lowerable(fn)
    counted = lowerable if count_with is None else _lowerable(count_with)
    lowered = lowerable.lower(*args, **kwargs)
    counted_lowered = lowered if count_with is None else counted.lower(*args, **kwargs)
    flops = _flops(counted_lowered.cost_analysis())
    flops = flops or _flops(_cost_analysis_on_cpu(counted_lowered))
    if flops is None:
        logging.log_first_n(
            logging.WARNING,
            "XLA gave no FLOP count on %s: FLOPs unknown.",
            1,
            jax.default_backend(),
        )
        return None
    compiled = lowered.compile()
    shardings = jax.tree.leaves((compiled.input_shardings, compiled.output_shardings))
    num_devices = max(len({device for sharding in shardings for device in sharding.device_set}), 1)
    if isinstance(counted, jax.stages.Wrapped):  # jit: the lowered program is the global one
        flops /= num_devices
    return StepCost(flops_per_device=flops, num_devices=num_devices)


def _lowerable(fn: Callable) -> Any:
    """`fn` itself where it can be lowered (jitted or pmapped), else jitted."""
    return fn if hasattr(fn, "lower") else jax.jit(fn)


def _cost_analysis_on_cpu(lowered: jax.stages.Lowered) -> Any:
    """XLA's CPU cost model applied to the lowered program (the same HLO on every backend).

    Backends served through a PJRT plugin (CUDA among them) cannot analyse a lowered program; the
    CPU client, present beside them, can. Uses JAX internals: None where they are missing.
    """
    try:
        from jax._src.lib import _jax

        module = lowered.compiler_ir("hlo").as_hlo_module()
        return _jax.hlo_module_cost_analysis(jax.local_devices(backend="cpu")[0].client, module)
    except Exception as error:  # noqa: BLE001  an internal API: any failure means no count
        logging.log_first_n(logging.WARNING, "No CPU cost analysis: %r", 1, error)
        return None


def _flops(cost_analysis: Any) -> float | None:
    """The 'flops' entry of a cost analysis: a dict, or (older JAX) a list holding one dict.

    XLA reports -1 where it cannot count (seen on GPU in older releases): that is None here too.
    """
    if isinstance(cost_analysis, (list, tuple)):
        cost_analysis = cost_analysis[0] if cost_analysis else None
    flops = (cost_analysis or {}).get("flops")
    return None if flops is None or flops < 0 else float(flops)
