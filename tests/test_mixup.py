"""Mixup/CutMix on the device: timm's semantics, and the same batch on 1 or 8 devices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bird_jax.augment import mixup

N, SIZE = 16, 8  # global batch (labels 0..N-1, one class each) and image side


def _batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.uniform(0, 1, (N, SIZE, SIZE, 3)), jnp.float32)
    return images, mixup.smooth_one_hot(jnp.arange(N), N), jnp.arange(N, dtype=jnp.int32)


def _mix(axis_name=None, **params):
    return functools.partial(mixup.mix, global_size=N, axis_name=axis_name, **params)


def _run(key_seed: int = 0, **params):
    """Mixes the global batch on one host without pmap; returns inputs and outputs as numpy."""
    images, targets, index = _batch()
    out_images, out_targets = jax.jit(_mix(**params))(
        images, targets, jax.random.PRNGKey(key_seed), index
    )
    return np.asarray(images), np.asarray(out_images), np.asarray(out_targets)


def test_smooth_one_hot_matches_timm():
    targets = mixup.smooth_one_hot(jnp.array([2, 0]), 4, 0.1)
    np.testing.assert_allclose(targets[0], [0.025, 0.025, 0.925, 0.025])
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="smoothing"):
        mixup.smooth_one_hot(jnp.array([0]), 4, 1.5)
    with pytest.raises(ValueError, match="num_classes"):
        mixup.smooth_one_hot(jnp.array([0]), 0)


def test_global_partner_is_example_n_minus_1_minus_g_across_devices():
    index = jnp.arange(N).reshape(8, N // 8)
    partner = jax.pmap(lambda x: mixup.global_partner(x, "batch"), axis_name="batch")(index)
    np.testing.assert_array_equal(partner, N - 1 - index)
    np.testing.assert_array_equal(mixup.global_partner(jnp.arange(N), None), N - 1 - jnp.arange(N))


def test_prob_zero_changes_nothing_but_smoothing_stays():
    images, targets, index = _batch()
    smoothed = mixup.smooth_one_hot(jnp.arange(N), N, 0.1)
    out_images, out_targets = jax.jit(_mix(mode="elem", prob=0.0))(
        images, smoothed, jax.random.PRNGKey(0), index
    )
    np.testing.assert_array_equal(out_images, images)
    np.testing.assert_allclose(out_targets, smoothed)
    assert not np.array_equal(out_targets, targets)


def test_pair_mode_partners_share_lam_and_exchange_content():
    before, after, targets = _run(mode="pair")
    lam = np.diag(targets)  # label g is class g, so lam of example g is targets[g, g]
    np.testing.assert_allclose(lam, lam[::-1], rtol=1e-6)
    np.testing.assert_allclose(targets[np.arange(N), N - 1 - np.arange(N)], 1 - lam, atol=1e-6)
    # Mixup blends and CutMix swaps a shared box: either way a pair's sum is unchanged.
    np.testing.assert_allclose(after + after[::-1], before + before[::-1], atol=1e-5)
    assert len(np.unique(np.round(lam[: N // 2], 5))) > 1


def test_batch_mode_uses_one_lam_for_all():
    _, _, targets = _run(mode="batch", key_seed=3)
    lam = np.diag(targets)
    np.testing.assert_allclose(lam, lam[0], rtol=1e-6)
    assert lam[0] < 1


def test_mixup_blends_with_the_partner():
    before, after, targets = _run(mode="elem", cutmix_alpha=0.0)
    lam = np.diag(targets)[:, None, None, None]
    np.testing.assert_allclose(after, lam * before + (1 - lam) * before[::-1], atol=1e-5)


@pytest.mark.parametrize("minmax", [None, (0.25, 0.75)])
def test_cutmix_pastes_a_partner_box_and_lam_is_one_minus_its_area(minmax):
    before, after, targets = _run(mode="elem", mixup_alpha=0.0, cutmix_minmax=minmax)
    partner = before[::-1]
    for i in range(N):
        changed = np.any(after[i] != before[i], axis=-1)
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        assert changed.sum() == len(rows) * len(cols)  # one rectangle (or nothing)
        np.testing.assert_array_equal(after[i][changed], partner[i][changed])
        np.testing.assert_allclose(targets[i, i], 1 - changed.mean(), atol=1e-6)
        if minmax is not None:  # sides in [int(0.25 * 8), int(0.75 * 8))
            assert 2 <= len(rows) < 6 and 2 <= len(cols) < 6


@pytest.mark.parametrize("mode", mixup.MODES)
def test_same_mix_on_1_and_8_devices_and_targets_are_distributions(mode):
    images, targets, index = _batch()
    mix = _mix(axis_name="batch", mode=mode)
    on_8 = jax.pmap(mix, axis_name="batch", in_axes=(0, 0, None, 0))
    on_1 = jax.pmap(mix, axis_name="batch", in_axes=(0, 0, None, 0), devices=jax.devices()[:1])
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        outputs = []
        for devices, run in ((8, on_8), (1, on_1)):
            sharded = [x.reshape(devices, N // devices, *x.shape[1:]) for x in (images, targets)]
            out = run(*sharded, key, index.reshape(devices, -1))
            outputs.append([np.asarray(x).reshape(N, *x.shape[2:]) for x in out])
        (images_8, targets_8), (images_1, targets_1) = outputs
        np.testing.assert_array_equal(images_8, images_1)
        np.testing.assert_array_equal(targets_8, targets_1)
        np.testing.assert_allclose(targets_8.sum(axis=1), 1.0, rtol=1e-5)
        assert targets_8.min() >= 0 and targets_8.max() <= 1
        assert (targets_8.max(axis=1) < 1).any()  # something was mixed
        assert images_8.min() >= 0 and images_8.max() <= 1


@pytest.mark.parametrize(
    "params, name",
    [
        ({"mode": "half"}, "mode"),
        ({"mixup_alpha": -1.0}, "mixup_alpha"),
        ({"mixup_alpha": 0.0, "cutmix_alpha": 0.0}, "cutmix_alpha"),
        ({"prob": 1.5}, "prob"),
        ({"switch_prob": -0.1}, "switch_prob"),
        ({"cutmix_minmax": (0.5, 0.4)}, "cutmix_minmax"),
        ({"global_size": N + 1}, "global_size"),
        ({"global_size": 2 * N}, "global_size"),
    ],
)
def test_bad_params_raise_value_error_naming_the_param(params, name):
    images, targets, index = _batch()
    call = functools.partial(mixup.mix, **{"global_size": N, "axis_name": None, **params})
    with pytest.raises(ValueError, match=name):
        jax.eval_shape(call, images, targets, jax.random.PRNGKey(0), index)
