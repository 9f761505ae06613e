"""Dataset distillation: condense a dataset into a few images per class, then train on them.

Methods (config.distill.method): DC (gradient matching), DSA (DC with Differentiable Siamese
Augmentation), DM (distribution matching) and the coresets random, herding and k-center, all on
ConvNet-D (bird_jax.models.convnet). `distill(config, real)` runs one in a call;
`python -m bird_jax.distill` runs it resumably with logs, then the papers' evaluation protocol
(bird_jax.distill.protocol). The set is a dataset: `config.data.source = "distilled"`.
"""

from bird_jax.distill.methods import distill
from bird_jax.distill.real import RealData, load_real
from bird_jax.distill.synthetic import SyntheticSet, load_synthetic, save_synthetic

__all__ = ["RealData", "SyntheticSet", "distill", "load_real", "load_synthetic", "save_synthetic"]
