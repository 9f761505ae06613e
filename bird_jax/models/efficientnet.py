"""EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", 2019) B0 as torchvision and timm build it, and EfficientNet-Lite0 as TensorFlow's
lite models (and their PyTorch ports) do."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bird_jax.models.common import Dtype, check_positive, check_rate
from bird_jax.models.inverted_residual import Network, classify

# B0's (and Lite0's) stages: (expansion, width, blocks, stride of the first block, kernel size).
STAGES = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)

# name -> architecture; B0 5,288,548 parameters, Lite0 4,652,008 at 1000 classes.
ARCHITECTURES = {
    "b0": {
        "stages": STAGES,
        "stem_width": 32,
        "final_width": 1280,
        "se_ratio": 0.25,
        "activation": "silu",
        "same_padding": False,
        "bn_epsilon": 1e-5,
    },
    # ReLU6 and no squeeze-excite (for quantization), TensorFlow padding and BatchNorm eps.
    "lite0": {
        "stages": STAGES,
        "stem_width": 32,
        "final_width": 1280,
        "se_ratio": 0.0,
        "activation": "relu6",
        "same_padding": True,
        "bn_epsilon": 1e-3,
    },
}

# Linear layers start from U(-1/sqrt(out), 1/sqrt(out)), as in torchvision and timm.
head_init = nn.initializers.variance_scaling(1 / 3, "fan_out", "uniform")


class EfficientNet(nn.Module):
    """3x3 stride-2 stem, stages of inverted-residual (MBConv) blocks, 1x1 conv, global average
    pool, dropout and a dense head.

    Attributes:
      num_classes: width of the logits.
      stages: (expansion, width, blocks, stride of the first block, kernel size) of each stage.
      stem_width: output width of the stem.
      final_width: output width of the 1x1 conv before the pool.
      se_ratio: squeeze-excite width as a fraction of each block's input width; 0 for none.
      activation: 'silu' or 'relu6' (a key of inverted_residual.ACTIVATIONS).
      same_padding: TensorFlow's "SAME" padding (asymmetric at stride 2) instead of symmetric.
      bn_epsilon: BatchNorm epsilon.
      drop_path_rate: stochastic depth; block n of N drops with rate drop_path_rate * n / N.
      dropout_rate: dropout on the pooled features.
      dtype: compute dtype of the activations; parameters are float32, logits float32.
    """

    num_classes: int
    stages: Sequence[tuple[int, int, int, int, int]]
    stem_width: int
    final_width: int
    se_ratio: float
    activation: str
    same_padding: bool
    bn_epsilon: float
    drop_path_rate: float = 0.2
    dropout_rate: float = 0.2
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_positive("EfficientNet", num_classes=self.num_classes)
        check_rate(
            "EfficientNet", drop_path_rate=self.drop_path_rate, dropout_rate=self.dropout_rate
        )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        layers = [
            (expansion, width, strides if i == 0 else 1, kernel_size)
            for expansion, width, depth, strides, kernel_size in self.stages
            for i in range(depth)
        ]
        blocks = tuple(
            {
                "features": width,
                "expansion": expansion,
                "strides": strides,
                "kernel_size": kernel_size,
                "se_ratio": self.se_ratio,
                "drop_path_rate": self.drop_path_rate * n / len(layers),
            }
            for n, (expansion, width, strides, kernel_size) in enumerate(layers)
        )
        network = Network(
            stem_width=self.stem_width,
            blocks=blocks,
            final_width=self.final_width,
            activation=self.activation,
            same_padding=self.same_padding,
            bn_epsilon=self.bn_epsilon,
            head_init=head_init,
        )
        return classify(
            x,
            network,
            num_classes=self.num_classes,
            dropout_rate=self.dropout_rate,
            train=train,
            dtype=self.dtype,
        )
