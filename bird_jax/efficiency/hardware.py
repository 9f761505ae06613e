"""Peak FLOP/s per device, for model FLOPs utilisation (MFU).

Accelerators: dense (no sparsity) vendor datasheet numbers, looked up from `device.device_kind`.
A precision names the run's compute dtype (`config.precision`) and its peak is the rate of the
matmul units that dtype uses under JAX's default matmul precision, so that MFU stays <= 1:
float32 matmuls run as TF32 on NVIDIA tensor cores from Ampere on and as one bfloat16 pass on TPU
(https://docs.jax.dev/en/latest/201/precision.html). float16 without a listed peak (TPU) falls
back to the bfloat16 peak, and the label says so.

CPU: no datasheet; the peak is a measured jitted matmul, shared equally by the process's CPU
devices (the fake devices of `--xla_force_host_platform_device_count` share the same cores).
"""

import dataclasses
import functools
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

PRECISIONS = ("bfloat16", "float16", "float32")


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """Datasheet peaks of one accelerator model, in FLOP/s per device, by precision."""

    name: str
    pattern: str  # regex searched in the normalised device_kind (see `match_device_kind`)
    peaks: dict[str, float]


def _nvidia(name: str, pattern: str, tensor_16bit: float, tf32: float) -> DeviceSpec:
    """Ampere or later: bfloat16 = float16 tensor-core rate; float32 runs as TF32 by default."""
    peaks = {"bfloat16": tensor_16bit, "float16": tensor_16bit, "float32": tf32}
    return DeviceSpec(name, pattern, peaks)


def _tpu(name: str, pattern: str, bf16: float) -> DeviceSpec:
    """TPU MXUs: float32 matmuls take one bfloat16 pass by default; no float16 peak is published."""
    return DeviceSpec(name, pattern, {"bfloat16": bf16, "float32": bf16})


def _volta(name: str, pattern: str, fp16_tensor: float, fp32: float) -> DeviceSpec:
    """Volta: float16 tensor cores, no TF32, no bfloat16 units (bfloat16 gets the FP32 rate)."""
    peaks = {"bfloat16": fp32, "float16": fp16_tensor, "float32": fp32}
    return DeviceSpec(name, pattern, peaks)


# First match wins: more specific patterns (PCIe, NVL, V100S) come before the general ones.
# Datasheets quote peaks "with sparsity" for Hopper/Ada tensor cores; the dense rate is half.
SPECS: tuple[DeviceSpec, ...] = (
    # NVIDIA H100 Tensor Core GPU datasheet: PCIe BF16 1513 / TF32 756 sparse (CUDA-core FP32 51).
    _nvidia("NVIDIA H100 PCIe", r"\bh100\b.*\bpcie\b", 756.5e12, 378.0e12),
    # Same datasheet, H100 NVL: BF16 1671 / TF32 835 sparse (CUDA-core FP32 60).
    _nvidia("NVIDIA H100 NVL", r"\bh100\b.*\bnvl\b", 835.5e12, 417.5e12),
    # Same datasheet, H100 SXM ('NVIDIA H100 80GB HBM3'): BF16 1979 / TF32 989 sparse (FP32 67).
    _nvidia("NVIDIA H100 SXM", r"\bh100\b", 989.5e12, 494.5e12),
    # NVIDIA H200 Tensor Core GPU datasheet, H200 NVL: BF16 1671 / TF32 835 sparse (FP32 60).
    _nvidia("NVIDIA H200 NVL", r"\bh200\b.*\bnvl\b", 835.5e12, 417.5e12),
    # Same datasheet, H200 SXM: BF16 1979 / TF32 989 sparse (CUDA-core FP32 67).
    _nvidia("NVIDIA H200 SXM", r"\bh200\b", 989.5e12, 494.5e12),
    # NVIDIA A100 Tensor Core GPU datasheet (40/80 GB, SXM and PCIe alike): BF16 312, TF32 156
    # dense (CUDA-core FP32 19.5).
    _nvidia("NVIDIA A100", r"\ba100\b", 312.0e12, 156.0e12),
    # NVIDIA L4 Tensor Core GPU datasheet: BF16 242 / TF32 120 sparse (CUDA-core FP32 30.3).
    _nvidia("NVIDIA L4", r"\bl4\b", 121.0e12, 60.0e12),
    # NVIDIA V100 Tensor Core GPU datasheet: V100S PCIe 130 / 16.4, PCIe 112 / 14, SXM2 125 / 15.7
    # (float16 tensor / FP32).
    _volta("NVIDIA V100S PCIe", r"\bv100s\b", 130.0e12, 16.4e12),
    _volta("NVIDIA V100 PCIe", r"\bv100\b.*\bpcie\b", 112.0e12, 14.0e12),
    _volta("NVIDIA V100 SXM2", r"\bv100\b", 125.0e12, 15.7e12),
    # Google Cloud TPU docs (system architecture; v4, v5e, v5p, v6e pages): bf16 peak per chip.
    # device_kind: 'TPU v4', 'TPU v5 lite' (v5e), 'TPU v5' (v5p), 'TPU v6 lite' (v6e).
    _tpu("TPU v4", r"^tpu v4$", 275.0e12),
    _tpu("TPU v5e", r"^tpu v5( lite|e)$", 197.0e12),
    _tpu("TPU v5p", r"^tpu v5p?$", 459.0e12),
    _tpu("TPU v6e (Trillium)", r"^tpu v6( lite|e)$", 918.0e12),
)


def match_device_kind(device_kind: str) -> DeviceSpec | None:
    """The spec whose pattern matches `device_kind` (lower-cased, '-'/'_' as spaces), or None."""
    normalised = " ".join(re.sub(r"[-_]", " ", device_kind.lower()).split())
    return next((s for s in SPECS if re.search(s.pattern, normalised)), None)


def measure_cpu_matmul_peak(
    dtype: DTypeLike = jnp.float32, size: int = 1024, repeats: int = 5
) -> float:
    """FLOP/s of a jitted `size` x `size` matmul on the first CPU device (best of `repeats`)."""
    cpu = jax.devices("cpu")[0]
    rng = np.random.default_rng(0)
    a, b = (jax.device_put(rng.standard_normal((size, size)).astype(dtype), cpu) for _ in "ab")
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


@functools.cache
def _cpu_machine_peak(precision: str) -> float:
    return measure_cpu_matmul_peak(jnp.dtype(precision))


def peak_flops(device: jax.Device, precision: str) -> tuple[float | None, str]:
    """(Peak FLOP/s of one `device` computing in `precision`, where the number comes from).

    The source is 'datasheet <name>' (with a note when float16 falls back to bfloat16),
    'measured CPU matmul ...' (measured once per process and precision) or 'unknown device'.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; expected one of {PRECISIONS}.")
    if device.platform == "cpu":
        num_cpu_devices = len(jax.devices("cpu"))
        label = f"measured CPU matmul ({precision}, shared by {num_cpu_devices} CPU devices)"
        return _cpu_machine_peak(precision) / num_cpu_devices, label
    spec = match_device_kind(device.device_kind)
    if spec is None:
        return None, "unknown device"
    if precision in spec.peaks:
        return spec.peaks[precision], f"datasheet {spec.name}"
    return spec.peaks["bfloat16"], f"datasheet {spec.name} (bfloat16 peak for {precision})"


def mfu(
    flops_per_step_per_device: float, step_seconds: float, peak_flops_per_device: float
) -> float:
    """Model FLOPs utilisation: achieved FLOP/s per device over the device's peak."""
    if step_seconds <= 0 or peak_flops_per_device <= 0:
        raise ValueError("step_seconds and peak_flops_per_device must be positive.")
    return flops_per_step_per_device / step_seconds / peak_flops_per_device
