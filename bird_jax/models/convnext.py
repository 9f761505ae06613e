"""ConvNeXt (Liu et al., "A ConvNet for the 2020s", 2022)."""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bird_jax.models.common import (
    DepthwiseConv,
    Dtype,
    check_positive,
    check_rate,
    classifier,
    drop_path,
    global_average_pool,
)

# Official (depths, dims) of each size.
ARCHITECTURES = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "xlarge": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}

# Truncated at +-2 standard deviations (JAX's convention; PyTorch's trunc_normal_(std=.02) cuts
# at +-2 absolute, i.e. practically never).
kernel_init = nn.initializers.truncated_normal(stddev=0.02)
layer_norm = functools.partial(nn.LayerNorm, epsilon=1e-6, param_dtype=jnp.float32)


def drop_path_rates(depths: Sequence[int], max_rate: float) -> list[list[float]]:
    """Per-stage lists of per-block rates rising linearly from 0 to `max_rate` over all blocks."""
    rates = np.linspace(0.0, max_rate, sum(depths))
    return [stage.tolist() for stage in np.split(rates, np.cumsum(depths)[:-1])]


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv -> LayerNorm -> Dense 4x -> GELU -> Dense -> layer scale -> drop path.

    The residual stream is kept in float32 (as under PyTorch autocast): with bf16 compute the
    block's small layer-scaled update would otherwise vanish when added to it.
    """

    features: int
    drop_path_rate: float
    layer_scale_init: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        dense = functools.partial(
            nn.Dense, kernel_init=kernel_init, dtype=self.dtype, param_dtype=jnp.float32
        )
        y = DepthwiseConv(
            7,
            padding=3,
            kernel_init=kernel_init,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="dwconv",
        )(x)
        y = layer_norm(dtype=self.dtype, name="norm")(y)
        y = nn.gelu(dense(4 * self.features, name="pwconv1")(y), approximate=False)
        y = dense(self.features, name="pwconv2")(y).astype(jnp.float32)
        if self.layer_scale_init > 0:
            init = nn.initializers.constant(self.layer_scale_init)
            y = y * self.param("layer_scale", init, (self.features,), jnp.float32)
        if train and self.drop_path_rate > 0:
            y = drop_path(y, self.drop_path_rate, self.make_rng("dropout"))
        return x.astype(jnp.float32) + y


class ConvNeXt(nn.Module):
    """4x4 patchify stem, four stages of ConvNeXt blocks with LayerNorm + 2x2 conv downsampling
    between them, global average pool, LayerNorm and a dense head.

    ConvNeXt-T has 28,589,128 parameters at 1000 classes. LayerNorm eps is 1e-6; conv and dense
    kernels start from a truncated normal with std 0.02 and biases from zero.

    Attributes:
      num_classes: width of the logits.
      depths: number of blocks per stage.
      dims: width of each stage.
      drop_path_rate: stochastic depth rate of the last block; it rises linearly from 0.
      layer_scale_init: initial value of the per-channel layer scale; 0 disables layer scale.
      head_init_scale: multiplies the initial head kernel.
      dtype: compute dtype of the activations; parameters are float32, logits float32. The pooled
        features, the final LayerNorm and the head run in float32.
    """

    num_classes: int
    depths: Sequence[int]
    dims: Sequence[int]
    drop_path_rate: float = 0.0
    layer_scale_init: float = 1e-6
    head_init_scale: float = 1.0
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_positive("ConvNeXt", num_classes=self.num_classes)
        check_rate("ConvNeXt", drop_path_rate=self.drop_path_rate)
        if self.layer_scale_init < 0:
            raise ValueError(
                f"ConvNeXt: layer_scale_init must be >= 0, got {self.layer_scale_init}."
            )
        if len(self.depths) != len(self.dims):
            raise ValueError("ConvNeXt: depths and dims must have the same length.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = functools.partial(
            nn.Conv,
            padding="VALID",
            kernel_init=kernel_init,
            dtype=self.dtype,
            param_dtype=jnp.float32,
        )
        x = x.astype(self.dtype)
        x = conv(self.dims[0], (4, 4), strides=4, name="stem_conv")(x)
        x = layer_norm(dtype=self.dtype, name="stem_norm")(x)
        rates = drop_path_rates(self.depths, self.drop_path_rate)
        for stage, (features, stage_rates) in enumerate(zip(self.dims, rates, strict=True)):
            if stage > 0:
                x = layer_norm(dtype=self.dtype, name=f"downsample{stage}_norm")(x)
                x = conv(features, (2, 2), strides=2, name=f"downsample{stage}_conv")(x)
            for i, rate in enumerate(stage_rates):
                x = ConvNeXtBlock(
                    features, rate, self.layer_scale_init, self.dtype, name=f"stage{stage}_block{i}"
                )(x, train)
        x = layer_norm(dtype=jnp.float32, name="norm")(global_average_pool(x))
        head_init = nn.initializers.truncated_normal(stddev=0.02 * self.head_init_scale)
        return classifier(self.num_classes, kernel_init=head_init)(x)
