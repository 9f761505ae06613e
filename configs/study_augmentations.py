"""The bird study's eleven augmentations as pipeline ops (bird_jax.augment), by study name.

Host ops (Grain workers): flip, median blur, CLAHE, compression, edges. Device ops (in the train
step): brightness, contrast, saturation, Gaussian noise, salt-and-pepper, grid noise. The
probabilities make about 2.6 of the eleven apply to an average image.
"""

BASE = "random_resized_crop(scale=(0.35, 1))"

STUDY_OPS = {
    # host
    "flip": "flip_lr(p=0.5)",
    "median_blur": "median_blur(3, p=0.2)",
    "clahe": "clahe(2.0, p=0.2)",
    "compression": "jpeg((30, 90), p=0.2)",
    "edges": "edges(blend=0.3, p=0.1)",
    # device
    "brightness": "brightness(0.2, p=0.3)",
    "contrast": "contrast(0.7, 1.3, p=0.3)",
    "saturation": "saturation(0.6, 1.4, p=0.3)",
    "gaussian_noise": "gaussian_noise((0.01, 0.05), p=0.2)",
    "salt_pepper": "salt_pepper(0.02, p=0.1)",
    "grid_noise": "grid_mask(0.4, p=0.2)",
}


def study_pipeline(names=tuple(STUDY_OPS)) -> str:
    """BASE followed by the named study ops (all eleven by default), host ops first."""
    unknown = sorted(set(names) - set(STUDY_OPS))
    if unknown:
        raise ValueError(f"Unknown study augmentation(s) {unknown}; known: {list(STUDY_OPS)}.")
    return "|".join([BASE, *(STUDY_OPS[name] for name in STUDY_OPS if name in names)])
