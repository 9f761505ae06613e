"""XLA's FLOP counts: analytic matmul and convolution counts, per-device pmap costs, model FLOPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from bird_jax.efficiency import flops

B, N, M = 4, 32, 16


def _random(*shape: int) -> jax.Array:
    return jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)


def _matmul(x, w):
    return x @ w


def test_dense_layer_counts_two_flops_per_multiply_add():
    # x[B, N] @ w[N, M]: B * M outputs, each N multiplies and N adds; XLA's count is exact.
    assert flops.step_cost(_matmul, _random(B, N), _random(N, M)).flops_per_device == 2 * B * N * M


# Taps per spatial axis of a 3-wide kernel on 8 pixels: 'VALID' has 6 outputs that see 3 taps each;
# 'SAME' has 8 outputs, and XLA does not count the 2 taps that fall on the zero border.
@pytest.mark.parametrize("padding, taps_per_axis", [("VALID", 6 * 3), ("SAME", 8 * 3 - 2)])
def test_convolution_counts_the_taps_inside_the_image(padding, taps_per_axis):
    batch, size, k, c_in, c_out = 2, 8, 3, 3, 5

    def conv(x, kernel):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=dims)

    images = jax.ShapeDtypeStruct((batch, size, size, c_in), jnp.float32)
    kernel = jax.ShapeDtypeStruct((k, k, c_in, c_out), jnp.float32)
    # 2 * B * H_out * W_out * k * k * C_in * C_out, with H_out * k taps per axis counted as above.
    expected = 2 * batch * taps_per_axis**2 * c_in * c_out
    assert flops.step_cost(conv, images, kernel).flops_per_device == expected


def test_pmap_and_sharded_jit_report_per_device_flops():
    num_devices = jax.local_device_count()
    w = _random(N, M)
    per_device = 2 * B * N * M

    pmapped = jax.pmap(_matmul, in_axes=(0, None))
    cost = flops.step_cost(pmapped, _random(num_devices, B, N), w)
    assert cost.num_devices == num_devices
    assert cost.flops_per_device == pytest.approx(per_device, rel=1e-3)  # + shard_map's boundary
    assert cost.total == num_devices * cost.flops_per_device

    mesh = jax.make_mesh((num_devices,), ("batch",))
    x = jax.device_put(_random(num_devices * B, N), NamedSharding(mesh, PartitionSpec("batch")))
    sharded = flops.step_cost(jax.jit(_matmul), x, w)
    assert sharded.num_devices == num_devices
    assert sharded.flops_per_device == pytest.approx(per_device, rel=1e-3)

    single = flops.step_cost(jax.jit(_matmul), _random(B, N), w)
    assert single == flops.StepCost(flops_per_device=per_device, num_devices=1)


@pytest.mark.parametrize("analysis", [None, {}, [], [{}], {"flops": -1.0}, [{"flops": -1.0}]])
def test_no_usable_cost_analysis_gives_none(monkeypatch, analysis):
    monkeypatch.setattr(jax.stages.Lowered, "cost_analysis", lambda self: analysis)
    monkeypatch.setattr(flops, "_cost_analysis_on_cpu", lambda lowered: analysis)
    assert flops.step_cost(_matmul, _random(B, N), _random(N, M)) is None


def test_list_form_of_older_jax_is_read(monkeypatch):
    monkeypatch.setattr(jax.stages.Lowered, "cost_analysis", lambda self: [{"flops": 7.0}])
    assert flops.step_cost(_matmul, _random(B, N), _random(N, M)).flops_per_device == 7.0


def test_work_hidden_in_library_calls_after_optimisation_is_counted(monkeypatch):
    # On GPU the compiled program calls cuBLAS/cuDNN as custom calls, which XLA's analysis of the
    # compiled program counts as (almost) nothing; the count must come from the lowered program.
    monkeypatch.setattr(jax.stages.Compiled, "cost_analysis", lambda self: {"flops": 1.0})
    assert flops.step_cost(_matmul, _random(B, N), _random(N, M)).flops_per_device == 2 * B * N * M


def test_a_backend_without_lowered_analysis_is_counted_by_the_cpu_model(monkeypatch):
    # CUDA, a PJRT plugin, returns no analysis of a lowered program (and a compiled GPU program's
    # count misses cuBLAS/cuDNN): the lowered HLO goes through XLA's CPU cost model instead.
    monkeypatch.setattr(jax.stages.Lowered, "cost_analysis", lambda self: None)
    monkeypatch.setattr(jax.stages.Compiled, "cost_analysis", lambda self: {"flops": 1.0})
    assert flops.step_cost(_matmul, _random(B, N), _random(N, M)).flops_per_device == 2 * B * N * M
    pmapped = jax.pmap(_matmul, in_axes=(0, None))
    cost = flops.step_cost(pmapped, _random(jax.local_device_count(), B, N), _random(N, M))
    assert cost.flops_per_device == pytest.approx(2 * B * N * M, rel=1e-3)


def test_a_loop_is_counted_once_unless_counted_with_its_unrolled_twin():
    def repeated(unroll):
        def fn(x, w):
            return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None, 5, unroll=unroll)[0]

        return fn

    x, w = _random(B, N), _random(N, N)
    once = flops.step_cost(repeated(1), x, w)
    counted = flops.step_cost(repeated(1), x, w, count_with=repeated(True))
    assert counted.flops_per_device == flops.step_cost(repeated(True), x, w).flops_per_device
    assert counted.flops_per_device >= 5 * 2 * B * N * N > once.flops_per_device
    assert counted.num_devices == once.num_devices == 1
