"""Ultra-lightweight CNN: a MobileNetV2-style stack of inverted-residual blocks."""

import functools
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
    global_average_pool,
)
from bird_jax.models.inverted_residual import ACTIVATIONS, InvertedResidual, scale_width


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
      activation: 'relu6', 'hard_swish' or 'silu'.
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
