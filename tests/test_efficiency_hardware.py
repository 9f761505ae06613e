"""Peak FLOP/s lookup by device_kind, the measured CPU peak and the MFU arithmetic."""

import types

import jax
import jax.numpy as jnp
import pytest

from bird_jax.efficiency import hardware


def _device(device_kind: str, platform: str = "gpu"):
    return types.SimpleNamespace(device_kind=device_kind, platform=platform)


@pytest.mark.parametrize(
    "device_kind, name",
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
        ("NVIDIA H200", "NVIDIA H200 SXM"),
        ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
        ("NVIDIA A100-SXM4-40GB", "NVIDIA A100"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100"),
        ("NVIDIA A100-PCIE-40GB", "NVIDIA A100"),
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100"),
        ("Tesla V100-SXM2-16GB", "NVIDIA V100 SXM2"),
        ("Tesla V100-SXM2-32GB", "NVIDIA V100 SXM2"),
        ("Tesla V100-PCIE-16GB", "NVIDIA V100 PCIe"),
        ("Tesla V100S-PCIE-32GB", "NVIDIA V100S PCIe"),
        ("NVIDIA L4", "NVIDIA L4"),
        ("TPU v4", "TPU v4"),
        ("TPU v5 lite", "TPU v5e"),
        ("TPU v5e", "TPU v5e"),
        ("TPU v5", "TPU v5p"),
        ("TPU v5p", "TPU v5p"),
        ("TPU v6 lite", "TPU v6e (Trillium)"),
        ("TPU v6e", "TPU v6e (Trillium)"),
    ],
)
def test_real_device_kinds_match_their_datasheet_entry(device_kind, name):
    assert hardware.match_device_kind(device_kind).name == name
    peak, source = hardware.peak_flops(_device(device_kind), "float16")
    assert peak >= 112e12 and source.startswith(f"datasheet {name}")


@pytest.mark.parametrize(
    "device_kind",
    ["NVIDIA L40S", "NVIDIA GeForce RTX 4090", "NVIDIA GH200 480GB", "TPU v4 lite", "TPU v3"],
)
def test_unknown_devices_have_no_peak(device_kind):
    assert hardware.match_device_kind(device_kind) is None
    assert hardware.peak_flops(_device(device_kind), "float32") == (None, "unknown device")


def test_datasheet_peaks_per_precision():
    h100 = _device("NVIDIA H100 80GB HBM3")
    assert hardware.peak_flops(h100, "bfloat16")[0] == 989.5e12  # 1979 with sparsity, halved
    assert hardware.peak_flops(h100, "float16")[0] == 989.5e12
    assert hardware.peak_flops(h100, "float32")[0] == 494.5e12  # TF32, JAX's default
    v100 = _device("Tesla V100-SXM2-16GB")
    assert hardware.peak_flops(v100, "float16")[0] == 125e12
    assert hardware.peak_flops(v100, "bfloat16")[0] == 15.7e12  # no bfloat16 tensor cores
    assert hardware.peak_flops(_device("TPU v5 lite", "tpu"), "float32")[0] == 197e12


def test_float16_on_tpu_falls_back_to_the_bfloat16_peak():
    peak, source = hardware.peak_flops(_device("TPU v6 lite", "tpu"), "float16")
    assert peak == 918e12
    assert source == "datasheet TPU v6e (Trillium) (bfloat16 peak for float16)"


@pytest.mark.parametrize("device", [_device("NVIDIA H100 PCIe"), jax.devices()[0]])
def test_unknown_precision_is_rejected(device):
    with pytest.raises(ValueError, match="fp32"):
        hardware.peak_flops(device, "fp32")


def test_mfu_arithmetic():
    # 2e12 FLOPs in 0.5 s = 4e12 FLOP/s, a fifth of a 2e13 FLOP/s peak.
    assert hardware.mfu(2e12, 0.5, 2e13) == pytest.approx(0.2, rel=1e-12)
    assert hardware.mfu(989.5e12, 1.0, 989.5e12) == 1.0
    with pytest.raises(ValueError):
        hardware.mfu(1e12, 0.0, 1e13)
    with pytest.raises(ValueError):
        hardware.mfu(1e12, 1.0, 0.0)


def test_cpu_matmul_peak_is_measured():
    assert hardware.measure_cpu_matmul_peak(jnp.float32, size=256, repeats=2) > 0


@pytest.fixture
def fresh_cpu_cache():
    hardware._cpu_machine_peak.cache_clear()
    yield
    hardware._cpu_machine_peak.cache_clear()


def test_cpu_peak_is_measured_once_and_shared_by_the_cpu_devices(monkeypatch, fresh_cpu_cache):
    calls = []

    def fake_measure(dtype):
        calls.append(dtype)
        return 8e11

    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", fake_measure)
    num_devices = len(jax.devices("cpu"))
    for _ in range(2):
        peak, source = hardware.peak_flops(jax.devices()[0], "bfloat16")
        assert peak == 8e11 / num_devices
        assert source.startswith("measured CPU matmul") and f"{num_devices} CPU devices" in source
    assert calls == [jnp.dtype(jnp.bfloat16)]
