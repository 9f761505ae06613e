"""ViT checkpoints: timm `VisionTransformer` and Hugging Face `ViTForImageClassification`, onto
`bird_jax.models.vit.ViT`.

Both adapt position embeddings trained at another image size (`resample_position_embeddings`).
Hugging Face's configs for the Google ViTs say layer_norm_eps 1e-12 (timm: 1e-6): create the
model with layer_norm_epsilon=1e-12 to reproduce Hugging Face's logits exactly.
"""

import re

import numpy as np

from bird_jax.models.vit import resample_position_embeddings
from bird_jax.pretrained.formats import Format, State, module_rules, register


def _patch_embedding(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """resize() of kernels: a clear error for the patch embedding (a ViT's one 4-D kernel) of
    another patch size; other kernels unchanged, for the usual shape check."""
    if array.ndim == 4 and array.shape[:2] != shape[:2]:
        raise ValueError(
            f"the checkpoint's patches are {array.shape[0]}x{array.shape[1]} px, the model's "
            f"{shape[0]}x{shape[1]}: use the ViT model of the checkpoint's patch size"
        )
    return array


_RESIZE = {"pos_embed": resample_position_embeddings, "kernel": _patch_embedding}

TIMM = register(
    Format(
        "timm_vit",
        models=("vit_",),
        signature=("patch_embed.proj.weight", "blocks.0.attn.qkv.weight"),
        rules=(
            ("cls_token", "params/cls_token"),
            ("pos_embed", "params/pos_embed"),
            *module_rules(r"patch_embed\.proj", "patch_embed", "dense"),
            *module_rules(r"blocks\.(\d+)\.(norm\d)", r"block\1/\2", "norm"),
            *module_rules(r"blocks\.(\d+)\.attn\.(qkv|proj)", r"block\1/attn/\2", "dense"),
            *module_rules(r"blocks\.(\d+)\.mlp\.(fc\d)", r"block\1/mlp/\2", "dense"),
            *module_rules("norm", "norm", "norm"),
            *module_rules("head", "head", "dense"),
        ),
        resize=_RESIZE,
    )
)

# Separate query/key/value Linears: the Hub's files (`attention.attention.query`) and what
# transformers >= 5 names them in memory (`attention.q_proj`).
_QKV = re.compile(r"(.*)\.(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)")
_ORDER = {"query": 0, "key": 1, "value": 2, "q_proj": 0, "k_proj": 1, "v_proj": 2}


def _merge_qkv(state: State) -> State:
    """Each layer's query, key and value weights (and biases) concatenated in that order into
    one `qkv` tensor: the layout of timm's fused Linear."""
    merged, parts = {}, {}
    for key, value in state.items():
        match = _QKV.fullmatch(key)
        if match is None:
            merged[key] = value
            continue
        prefix, name, param = match.groups()
        parts.setdefault(f"{prefix}.qkv.{param}", [None] * 3)[_ORDER[name]] = value
    for key, values in parts.items():
        if any(value is None for value in values):
            raise ValueError(f"{key}: the checkpoint lacks one of its query, key and value.")
        merged[key] = np.concatenate(values, axis=0)
    return merged


_LAYER = r"vit\.(?:encoder\.layer|layers)\.(\d+)"

HUGGING_FACE = register(
    Format(
        "hf_vit",
        models=("vit_",),
        signature=("vit.embeddings.patch_embeddings.projection.weight",),
        rules=(
            (r"vit\.embeddings\.cls_token", "params/cls_token"),
            (r"vit\.embeddings\.position_embeddings", "params/pos_embed"),
            *module_rules(r"vit\.embeddings\.patch_embeddings\.projection", "patch_embed", "dense"),
            *module_rules(rf"{_LAYER}\.layernorm_before", r"block\1/norm1", "norm"),
            *module_rules(rf"{_LAYER}\.layernorm_after", r"block\1/norm2", "norm"),
            *module_rules(
                rf"{_LAYER}\.attention\.(?:attention\.)?qkv", r"block\1/attn/qkv", "dense"
            ),
            *module_rules(
                rf"{_LAYER}\.attention\.(?:output\.dense|o_proj)", r"block\1/attn/proj", "dense"
            ),
            *module_rules(
                rf"{_LAYER}\.(?:intermediate\.dense|mlp\.fc1)", r"block\1/mlp/fc1", "dense"
            ),
            *module_rules(rf"{_LAYER}\.(?:output\.dense|mlp\.fc2)", r"block\1/mlp/fc2", "dense"),
            *module_rules(r"vit\.layernorm", "norm", "norm"),
            *module_rules("classifier", "head", "dense"),
        ),
        prepare=_merge_qkv,
        resize=_RESIZE,
    )
)
