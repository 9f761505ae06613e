"""EfficientNet checkpoints onto `bird_jax.models.efficientnet.EfficientNet`: torchvision's and
timm's efficientnet_b0, and EfficientNet-Lite0 as the `efficientnet_lite_pytorch` package (a
fork of lukemelas/EfficientNet-PyTorch) names it.

torchvision numbers blocks by stage (features.1 ... features.7) and a block's layers by position
(block.0 is the expand convolution, or the depthwise one in a block without expansion); timm
numbers blocks by stage too, and its first stage's depthwise-separable blocks call their
projection conv_pw (the expand convolution's name in the other blocks).
"""

from bird_jax.pretrained.formats import Format, module_rules, register
from bird_jax.pretrained.inverted_residual import block_rules, numbering_blocks

TORCHVISION = register(
    Format(
        "torchvision_efficientnet",
        models=("efficientnet_b0",),
        signature=(
            "features.0.0.weight",
            "features.1.0.block.0.0.weight",
            "classifier.1.weight",
        ),
        rules=(
            *module_rules(r"features\.0\.0", "stem_conv", "dense"),
            *module_rules(r"features\.0\.1", "stem_bn", "batch_norm"),
            *block_rules(
                r"block(\d+)\.block",
                {
                    "expand": "0.0",
                    "expand_bn": "0.1",
                    "depthwise": "1.0",
                    "depthwise_bn": "1.1",
                    "se/reduce": "2.fc1",
                    "se/expand": "2.fc2",
                    "project": "3.0",
                    "project_bn": "3.1",
                },
            ),
            # after the blocks, which `numbering_blocks` has taken out of `features`
            *module_rules(r"features\.\d+\.0", "final_conv", "dense"),
            *module_rules(r"features\.\d+\.1", "final_bn", "batch_norm"),
            *module_rules(r"classifier\.1", "head", "dense"),
        ),
        prepare=numbering_blocks(
            r"features\.(\d+)\.(\d+)\.(?=block\.)",
            expanded="block.3.",
            unexpanded=(
                ("block.0.", "block.1."),
                ("block.1.", "block.2."),
                ("block.2.", "block.3."),
            ),
        ),
    )
)

TIMM = register(
    Format(
        "timm_efficientnet",
        models=("efficientnet_b0",),
        # squeeze-excite: not timm's MobileNetV2 or EfficientNet-Lite, which name the rest alike
        signature=(
            "conv_stem.weight",
            "blocks.0.0.conv_dw.weight",
            "blocks.0.0.se.conv_reduce.weight",
        ),
        rules=(
            *module_rules("conv_stem", "stem_conv", "dense"),
            *module_rules("bn1", "stem_bn", "batch_norm"),
            *block_rules(
                r"block(\d+)",
                {
                    "expand": "conv_pw",
                    "expand_bn": "bn1",
                    "depthwise": "conv_dw",
                    "depthwise_bn": "bn2",
                    "se/reduce": "se.conv_reduce",
                    "se/expand": "se.conv_expand",
                    "project": "conv_pwl",
                    "project_bn": "bn3",
                },
            ),
            *module_rules("conv_head", "final_conv", "dense"),
            *module_rules("bn2", "final_bn", "batch_norm"),
            *module_rules("classifier", "head", "dense"),
        ),
        prepare=numbering_blocks(
            r"blocks\.(\d+)\.(\d+)\.",
            expanded="conv_pwl.",
            unexpanded=(("conv_pw.", "conv_pwl."), ("bn1.", "bn2."), ("bn2.", "bn3.")),
        ),
    )
)

LUKEMELAS_LITE = register(
    Format(
        "lukemelas_efficientnet_lite",
        models=("efficientnet_lite0",),
        signature=("_conv_stem.weight", "_blocks.0._depthwise_conv.weight", "_conv_head.weight"),
        rules=(
            *module_rules("_conv_stem", "stem_conv", "dense"),
            *module_rules("_bn0", "stem_bn", "batch_norm"),
            *block_rules(
                r"_blocks\.(\d+)",
                {
                    "expand": "_expand_conv",
                    "expand_bn": "_bn0",
                    "depthwise": "_depthwise_conv",
                    "depthwise_bn": "_bn1",
                    "project": "_project_conv",
                    "project_bn": "_bn2",
                },
            ),
            *module_rules("_conv_head", "final_conv", "dense"),
            *module_rules("_bn1", "final_bn", "batch_norm"),
            *module_rules("_fc", "head", "dense"),
        ),
    )
)
