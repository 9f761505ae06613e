"""Ultra-lightweight CNN: a MobileNetV2-style stack of inverted-residual blocks."""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bird_jax.models.common import (
    DepthwiseConv,
    Dtype,
    PointwiseConv,
    batch_norm,
    check_positive,
    check_rate,
    classifier,
    conv_kernel_init,
    global_average_pool,
)

ACTIVATIONS = {"relu6": jax.nn.relu6, "hard_swish": jax.nn.hard_swish}


def scale_width(width: int, multiplier: float, divisor: int = 8) -> int:
    """`width * multiplier` rounded to a multiple of `divisor`, never more than 10% below it."""
    scaled = max(divisor, int(width * multiplier + divisor / 2) // divisor * divisor)
    return scaled + divisor if scaled < 0.9 * width * multiplier else scaled


def conv(features: int, kernel_size: int, dtype: Dtype, name: str, **kwargs) -> nn.Module:
    """Bias-free square convolution (a BatchNorm follows it); 1x1 ones as a matmul."""
    if kernel_size == 1 and not kwargs:
        return PointwiseConv(
            features,
            use_bias=False,
            kernel_init=conv_kernel_init,
            dtype=dtype,
            param_dtype=jnp.float32,
            name=name,
        )
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        use_bias=False,
        kernel_init=conv_kernel_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
        **kwargs,
    )


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> linear 1x1 project, with a skip when the shape is kept.

    With expansion 1 there is no expand convolution: a depthwise-separable block.
    """

    features: int
    expansion: int
    strides: int
    activation: str
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        hidden = x.shape[-1] * self.expansion
        y = x
        if self.expansion != 1:
            y = conv(hidden, 1, self.dtype, name="expand")(y)
            y = act(batch_norm(train, self.dtype, name="expand_bn")(y))
        y = DepthwiseConv(
            3,
            strides=self.strides,
            padding=1,
            use_bias=False,
            kernel_init=conv_kernel_init,
            dtype=self.dtype,
            name="depthwise",
        )(y)
        y = act(batch_norm(train, self.dtype, name="depthwise_bn")(y))
        y = conv(self.features, 1, self.dtype, name="project")(y)
        y = batch_norm(train, self.dtype, name="project_bn")(y)
        return x + y if y.shape == x.shape else y


class LightweightCNN(nn.Module):
    """Conv stem, stages of inverted-residual blocks, 1x1 conv, global average pool, dropout, dense.

    MobileNetV2-style blocks with BatchNorm; with the defaults it has 262,762 parameters at 10
    classes. The stem (stride 2) and the first block of each stage (its stage stride) downsample.

    Attributes:
      num_classes: width of the logits.
      width_multiplier: scales every width (rounded to a multiple of 8).
      stem_width: output width of the 3x3 stride-2 stem convolution.
      stage_widths: output width of each stage.
      stage_depths: number of blocks in each stage.
      stage_strides: stride of the first block of each stage.
      stage_expansions: expansion factor of the blocks of each stage (1 = depthwise separable).
      head_features: width of the 1x1 convolution before the pool.
      activation: 'relu6' or 'hard_swish'.
      dropout_rate: dropout on the pooled features.
      dtype: compute dtype of the activations; parameters are float32, logits float32.
    """

    num_classes: int
    width_multiplier: float = 1.0
    stem_width: int = 16
    stage_widths: Sequence[int] = (16, 24, 40, 80, 112)
    stage_depths: Sequence[int] = (1, 2, 2, 3, 1)
    stage_strides: Sequence[int] = (1, 2, 2, 2, 1)
    stage_expansions: Sequence[int] = (1, 4, 4, 4, 4)
    head_features: int = 256
    activation: str = "relu6"
    dropout_rate: float = 0.2
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_positive(
            "LightweightCNN",
            num_classes=self.num_classes,
            width_multiplier=self.width_multiplier,
            stem_width=self.stem_width,
            head_features=self.head_features,
        )
        check_rate("LightweightCNN", dropout_rate=self.dropout_rate)
        stages = (self.stage_widths, self.stage_depths, self.stage_strides, self.stage_expansions)
        if len({len(s) for s in stages}) != 1:
            raise ValueError(
                "LightweightCNN: stage_widths, stage_depths, stage_strides and stage_expansions "
                f"must have the same length, got {[len(s) for s in stages]}."
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"LightweightCNN: activation must be one of {sorted(ACTIVATIONS)}, "
                f"got {self.activation!r}."
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        width = functools.partial(scale_width, multiplier=self.width_multiplier)
        x = x.astype(self.dtype)
        x = conv(width(self.stem_width), 3, self.dtype, name="stem", strides=2, padding=1)(x)
        x = act(batch_norm(train, self.dtype, name="stem_bn")(x))
        stages = zip(
            self.stage_widths,
            self.stage_depths,
            self.stage_strides,
            self.stage_expansions,
            strict=True,
        )
        for stage, (features, depth, strides, expansion) in enumerate(stages):
            for i in range(depth):
                x = InvertedResidual(
                    width(features),
                    expansion,
                    strides if i == 0 else 1,
                    self.activation,
                    self.dtype,
                    name=f"stage{stage}_block{i}",
                )(x, train)
        x = conv(width(self.head_features), 1, self.dtype, name="head_conv")(x)
        x = act(batch_norm(train, self.dtype, name="head_bn")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(global_average_pool(x))
        return classifier(self.num_classes)(x)
