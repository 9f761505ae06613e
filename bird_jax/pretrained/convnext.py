"""ConvNeXt checkpoints: timm, the official release (facebookresearch/ConvNeXt) and Hugging Face
`ConvNextForImageClassification`, onto `bird_jax.models.convnext.ConvNeXt`."""

from bird_jax.pretrained.formats import Format, module_rules, register

_BLOCK = r"stage\1_block\2"


def _block_rules(source: str, names: dict[str, str], layer_scale: str) -> tuple:
    """Rules of one block naming: `source` matches stage and block index, `names` maps our
    layer names (dwconv, norm, pwconv1, pwconv2) to the source's."""
    rules = ((rf"{source}\.{layer_scale}", rf"params/{_BLOCK}/layer_scale"),)
    for ours, theirs in names.items():
        kind = "norm" if ours == "norm" else "dense"
        rules += module_rules(rf"{source}\.{theirs}", f"{_BLOCK}/{ours}", kind)
    return rules


TIMM = register(
    Format(
        "timm_convnext",
        models=("convnext_",),
        signature=("stem.0.weight", "stages.0.blocks.0.conv_dw.weight"),
        rules=(
            *module_rules(r"stem\.0", "stem_conv", "dense"),
            *module_rules(r"stem\.1", "stem_norm", "norm"),
            *module_rules(r"stages\.(\d)\.downsample\.0", r"downsample\1_norm", "norm"),
            *module_rules(r"stages\.(\d)\.downsample\.1", r"downsample\1_conv", "dense"),
            *_block_rules(
                r"stages\.(\d)\.blocks\.(\d+)",
                {"dwconv": "conv_dw", "norm": "norm", "pwconv1": "mlp.fc1", "pwconv2": "mlp.fc2"},
                layer_scale="gamma",
            ),
            *module_rules(r"head\.norm", "norm", "norm"),
            *module_rules(r"head\.fc", "head", "dense"),
        ),
    )
)

OFFICIAL = register(
    Format(
        "official_convnext",
        models=("convnext_",),
        signature=("downsample_layers.0.0.weight", "stages.0.0.dwconv.weight"),
        rules=(
            *module_rules(r"downsample_layers\.0\.0", "stem_conv", "dense"),
            *module_rules(r"downsample_layers\.0\.1", "stem_norm", "norm"),
            *module_rules(r"downsample_layers\.(\d)\.0", r"downsample\1_norm", "norm"),
            *module_rules(r"downsample_layers\.(\d)\.1", r"downsample\1_conv", "dense"),
            *_block_rules(
                r"stages\.(\d)\.(\d+)",
                {"dwconv": "dwconv", "norm": "norm", "pwconv1": "pwconv1", "pwconv2": "pwconv2"},
                layer_scale="gamma",
            ),
            *module_rules("norm", "norm", "norm"),
            *module_rules("head", "head", "dense"),
        ),
    )
)

HUGGING_FACE = register(
    Format(
        "hf_convnext",
        models=("convnext_",),
        signature=("convnext.embeddings.patch_embeddings.weight",),
        rules=(
            *module_rules(r"convnext\.embeddings\.patch_embeddings", "stem_conv", "dense"),
            *module_rules(r"convnext\.embeddings\.layernorm", "stem_norm", "norm"),
            *module_rules(
                r"convnext\.encoder\.stages\.(\d)\.downsampling_layer\.0",
                r"downsample\1_norm",
                "norm",
            ),
            *module_rules(
                r"convnext\.encoder\.stages\.(\d)\.downsampling_layer\.1",
                r"downsample\1_conv",
                "dense",
            ),
            *_block_rules(
                r"convnext\.encoder\.stages\.(\d)\.layers\.(\d+)",
                {
                    "dwconv": "dwconv",
                    "norm": "layernorm",
                    "pwconv1": "pwconv1",
                    "pwconv2": "pwconv2",
                },
                layer_scale="layer_scale_parameter",
            ),
            *module_rules(r"convnext\.layernorm", "norm", "norm"),
            *module_rules("classifier", "head", "dense"),
        ),
    )
)
