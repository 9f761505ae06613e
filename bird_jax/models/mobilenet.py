"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018),
as torchvision builds it."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bird_jax.models.common import Dtype, check_positive, check_rate
from bird_jax.models.inverted_residual import Network, classify, scale_width

# torchvision's inverted_residual_setting: (expansion, width, blocks, stride of the first block).
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """3x3 stride-2 stem, 17 inverted-residual blocks with ReLU6, 1x1 conv, global average pool,
    dropout and a dense head; BatchNorm eps 1e-5.

    3,504,872 parameters at 1000 classes (torchvision's mobilenet_v2).

    Attributes:
      num_classes: width of the logits.
      stages: (expansion, width, blocks, stride of the first block) of each stage.
      stem_width: output width of the stem.
      final_width: output width of the 1x1 conv before the pool.
      width_multiplier: scales the stem's and blocks' widths, and the final width when above 1
        (rounded to multiples of 8, as torchvision's width_mult).
      dropout_rate: dropout on the pooled features.
      dtype: compute dtype of the activations; parameters are float32, logits float32.
    """

    num_classes: int
    stages: Sequence[tuple[int, int, int, int]]
    stem_width: int
    final_width: int
    width_multiplier: float = 1.0
    dropout_rate: float = 0.2
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_positive(
            "MobileNetV2", num_classes=self.num_classes, width_multiplier=self.width_multiplier
        )
        check_rate("MobileNetV2", dropout_rate=self.dropout_rate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        multiplier = self.width_multiplier
        blocks = tuple(
            {
                "features": scale_width(width, multiplier),
                "expansion": expansion,
                "strides": strides if i == 0 else 1,
            }
            for expansion, width, depth, strides in self.stages
            for i in range(depth)
        )
        network = Network(
            stem_width=scale_width(self.stem_width, multiplier),
            blocks=blocks,
            final_width=scale_width(self.final_width, max(1.0, multiplier)),
            activation="relu6",
        )
        return classify(
            x,
            network,
            num_classes=self.num_classes,
            dropout_rate=self.dropout_rate,
            train=train,
            dtype=self.dtype,
        )
