"""What `predict` asks of a model: class names, eval preprocessing, and logits to rank.

A restored run (`bird_jax.predict.Predictor`) and an exported file (`bird_jax.exported`) both
give `class_names`, `data_config` (image_size and data.eval_pipeline) and `logits`; turning
photos into ranked class names is done here, once, for both.
"""

import jax
import ml_collections
import numpy as np

from bird_jax import data


class Classifier:
    """Top-k class names for uint8 HxWx3 photos of any size, from a subclass's `logits`."""

    class_names: list[str]
    data_config: ml_collections.ConfigDict  # image_size, eval_pipeline, mean, std

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 logits [N, num_classes] for uint8 [N, image_size, image_size, 3] images
        already preprocessed as data.eval_pipeline does."""
        raise NotImplementedError

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """Softmax probabilities [N, num_classes] for uint8 HxWx3 images of any size."""
        batch = np.stack([data.preprocess_for_eval(im, self.data_config) for im in images])
        return np.asarray(jax.nn.softmax(self.logits(batch), axis=-1))

    def top_k(self, image: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k most probable (class name, probability) pairs for one image."""
        probs = self.probabilities([image])[0]
        order = np.argsort(-probs)[:k]
        return [(self.class_names[i], float(probs[i])) for i in order]
