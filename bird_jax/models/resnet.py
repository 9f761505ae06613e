"""ResNet (He et al., "Deep Residual Learning for Image Recognition", 2016) as torchvision builds
it: v1.5, the stride of a downsampling bottleneck on its 3x3 convolution."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bird_jax.models.common import (
    Dtype,
    batch_norm,
    check_positive,
    check_rate,
    classifier,
    conv,
    drop_path,
    global_average_pool,
)
from bird_jax.models.convnext import drop_path_rates

# (block, blocks per stage) of each torchvision model.
ARCHITECTURES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
# Output width of a block over its inner width.
EXPANSION = {"basic": 1, "bottleneck": 4}


class ResidualBlock(nn.Module):
    """Basic (3x3 -> 3x3) or bottleneck (1x1 -> 3x3 -> 1x1, 4x wider out) residual block; each
    conv is followed by BatchNorm, ReLU after the sum. A 1x1 conv + BatchNorm (`downsample`)
    projects the shortcut when the stride or width changes.
    """

    block: str
    features: int  # inner width; the output is EXPANSION[block] times wider
    strides: int
    drop_path_rate: float
    zero_init_residual: bool
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out_features = self.features * EXPANSION[self.block]
        kernel_sizes = (3, 3) if self.block == "basic" else (1, 3, 1)
        strided = kernel_sizes.index(3)  # v1.5: the first 3x3 conv downsamples
        y = x
        for i, kernel_size in enumerate(kernel_sizes):
            last = i == len(kernel_sizes) - 1
            features = out_features if last else self.features
            kwargs = {}
            if kernel_size == 3:
                kwargs = {"strides": self.strides if i == strided else 1, "padding": 1}
            y = conv(features, kernel_size, self.dtype, name=f"conv{i + 1}", **kwargs)(y)
            zero = last and self.zero_init_residual
            scale_init = nn.initializers.zeros if zero else nn.initializers.ones
            y = batch_norm(train, self.dtype, name=f"bn{i + 1}", scale_init=scale_init)(y)
            if not last:
                y = nn.relu(y)
        if train and self.drop_path_rate > 0:
            y = drop_path(y, self.drop_path_rate, self.make_rng("dropout"))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out_features:
            # A strided 1x1 conv reads every strides-th pixel: subsample, then a matmul.
            shortcut = x[:, :: self.strides, :: self.strides]
            shortcut = conv(out_features, 1, self.dtype, name="downsample_conv")(shortcut)
            shortcut = batch_norm(train, self.dtype, name="downsample_bn")(shortcut)
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """7x7 stride-2 conv stem + BatchNorm + ReLU + 3x3 stride-2 max pool, four stages of residual
    blocks (stages 2-4 start with stride 2), global average pool, dropout, dense head.

    ResNet-50 has 25,557,032 parameters at 1000 classes, as torchvision's. Convolutions start
    from He init (fan-out), BatchNorm at scale 1 and bias 0 (momentum 0.9, eps 1e-5).

    Attributes:
      num_classes: width of the logits.
      block: 'basic' (ResNet-18/34) or 'bottleneck' (ResNet-50/101).
      depths: number of blocks per stage.
      widths: inner width of each stage's blocks (bottleneck outputs are 4x wider).
      stem_width: output width of the stem convolution.
      zero_init_residual: start the last BatchNorm scale of each block at 0, so that every block
        starts as the identity (torchvision's option; Goyal et al., 2017).
      drop_path_rate: stochastic depth rate of the last block; it rises linearly from 0.
      dropout_rate: dropout on the pooled features.
      dtype: compute dtype of the activations; parameters are float32, logits float32.
    """

    num_classes: int
    block: str
    depths: Sequence[int]
    widths: Sequence[int] = (64, 128, 256, 512)
    stem_width: int = 64
    zero_init_residual: bool = False
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_positive("ResNet", num_classes=self.num_classes, stem_width=self.stem_width)
        check_rate("ResNet", drop_path_rate=self.drop_path_rate, dropout_rate=self.dropout_rate)
        if self.block not in EXPANSION:
            raise ValueError(
                f"ResNet: block must be one of {sorted(EXPANSION)}, got {self.block!r}."
            )
        if len(self.depths) != len(self.widths):
            raise ValueError("ResNet: depths and widths must have the same length.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.astype(self.dtype)
        x = conv(self.stem_width, 7, self.dtype, name="stem_conv", strides=2, padding=3)(x)
        x = nn.relu(batch_norm(train, self.dtype, name="stem_bn")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        rates = drop_path_rates(self.depths, self.drop_path_rate)
        for stage, (features, stage_rates) in enumerate(zip(self.widths, rates, strict=True)):
            for i, rate in enumerate(stage_rates):
                x = ResidualBlock(
                    self.block,
                    features,
                    2 if stage > 0 and i == 0 else 1,
                    rate,
                    self.zero_init_residual,
                    self.dtype,
                    name=f"layer{stage + 1}_block{i}",
                )(x, train)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(global_average_pool(x))
        return classifier(self.num_classes)(x)
