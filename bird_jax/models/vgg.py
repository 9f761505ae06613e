"""VGG (Simonyan & Zisserman, 2015), optionally with BatchNorm after every convolution."""

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
    conv_kernel_init,
    dense_kernel_init,
)

STAGE_WIDTHS = (64, 128, 256, 512, 512)
CONVS_PER_STAGE = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}


class VGG(nn.Module):
    """Five stages of 3x3 conv + ReLU, each closed by a 2x2 max pool, then three dense layers.

    The head flattens whatever spatial size the features have (7x7x512 at 224 px), so any input
    side that is a multiple of 32 works. VGG16 at 224 px and 1000 classes has 138,357,544
    parameters.

    Attributes:
      num_classes: width of the logits.
      convs_per_stage: number of convolutions in each of the five stages (VGG16: (2, 2, 3, 3, 3)).
      batch_norm: add BatchNorm between each convolution and its ReLU (the "_bn" variants).
      dropout_rate: dropout before the second and third dense layers.
      head_width: width of the two hidden dense layers.
      width_multiplier: scales the convolution widths (64, 128, 256, 512, 512); 1.0 is the paper.
      dtype: compute dtype of the activations; parameters are float32, logits float32.
    """

    num_classes: int
    convs_per_stage: Sequence[int]
    batch_norm: bool = False
    dropout_rate: float = 0.5
    head_width: int = 4096
    width_multiplier: float = 1.0
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_positive(
            "VGG",
            num_classes=self.num_classes,
            head_width=self.head_width,
            width_multiplier=self.width_multiplier,
        )
        check_rate("VGG", dropout_rate=self.dropout_rate)
        if len(self.convs_per_stage) != len(STAGE_WIDTHS):
            raise ValueError(f"VGG: convs_per_stage needs {len(STAGE_WIDTHS)} entries.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        min_side = 2 ** len(STAGE_WIDTHS)
        if min(x.shape[1:3]) < min_side:
            raise ValueError(f"VGG needs images of at least {min_side} px, got {x.shape[1:3]}.")
        conv = functools.partial(
            nn.Conv,
            kernel_size=(3, 3),
            padding=1,
            use_bias=not self.batch_norm,
            kernel_init=conv_kernel_init,
            dtype=self.dtype,
            param_dtype=jnp.float32,
        )
        dense = functools.partial(
            nn.Dense, kernel_init=dense_kernel_init, dtype=self.dtype, param_dtype=jnp.float32
        )

        x = x.astype(self.dtype)
        stages = zip(STAGE_WIDTHS, self.convs_per_stage, strict=True)
        for stage, (width, num_convs) in enumerate(stages):
            features = max(1, round(width * self.width_multiplier))
            for i in range(num_convs):
                x = conv(features, name=f"stage{stage}_conv{i}")(x)
                if self.batch_norm:
                    x = batch_norm(train, self.dtype, name=f"stage{stage}_bn{i}")(x)
                x = nn.relu(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))

        x = x.reshape(x.shape[0], -1)
        for i in range(2):
            x = nn.relu(dense(self.head_width, name=f"fc{i}")(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return classifier(self.num_classes)(x)
