"""torchvision MobileNetV2 checkpoints onto `bird_jax.models.mobilenet.MobileNetV2`.

torchvision numbers `features` from the stem (0) through the blocks to the final convolution,
and a block's layers by position: conv.0 is the expand convolution, or the depthwise one in a
block without expansion.
"""

from bird_jax.pretrained.formats import Format, module_rules, register
from bird_jax.pretrained.inverted_residual import block_rules, numbering_blocks

TORCHVISION = register(
    Format(
        "torchvision_mobilenet_v2",
        models=("mobilenet_v2",),
        signature=("features.0.0.weight", "features.1.conv.0.0.weight", "classifier.1.weight"),
        rules=(
            *module_rules(r"features\.0\.0", "stem_conv", "dense"),
            *module_rules(r"features\.0\.1", "stem_bn", "batch_norm"),
            *block_rules(
                r"block(\d+)\.conv",
                {
                    "expand": "0.0",
                    "expand_bn": "0.1",
                    "depthwise": "1.0",
                    "depthwise_bn": "1.1",
                    "project": "2",
                    "project_bn": "3",
                },
            ),
            # after the blocks, which `numbering_blocks` has taken out of `features`
            *module_rules(r"features\.\d+\.0", "final_conv", "dense"),
            *module_rules(r"features\.\d+\.1", "final_bn", "batch_norm"),
            *module_rules(r"classifier\.1", "head", "dense"),
        ),
        prepare=numbering_blocks(
            r"features\.(\d+)\.(?=conv\.)",
            expanded="conv.3.",
            unexpanded=(("conv.0.", "conv.1."), ("conv.1.", "conv.2."), ("conv.2.", "conv.3.")),
        ),
    )
)
