"""DM, distribution matching (Zhao & Bilen, "Dataset Condensation with Distribution Matching",
WACV 2023; official code `main_DM.py` of VICO-UoE/DatasetCondensation).

Every iteration draws a fresh randomly initialised network, embeds each class's batch of real
images and its synthetic images (both with the class's Siamese DSA draw), and takes one SGD step
(momentum 0.5) on the synthetic images against the sum over classes of the squared distance
between the mean embeddings.
"""

from __future__ import annotations

import jax

from bird_jax.distill.iterative import (
    DistillState,
    MatchingMethod,
    ShardedReal,
    fresh_params,
    image_step,
)
from bird_jax.distill.matching import mean_embedding_loss, siamese_pairs
from bird_jax.distill.shards import AXIS
from bird_jax.efficiency import flops


class DistributionMatching(MatchingMethod):
    """One DM iteration per call, the classes split over the local devices."""

    def __init__(self, *args, **kwargs):  # MatchingMethod's arguments
        super().__init__(*args, **kwargs)
        self.step = jax.pmap(self._step, axis_name=AXIS, in_axes=(0, 0, None, 0, 0, 0, 0))

    def _step(self, synthetic, opt_state, key, real, counts, class_ids, weights):
        net_key, pair_key = jax.random.split(key)
        params = fresh_params(self.model, net_key, self.image_shape)

        def loss_fn(synthetic):
            real_batches, synthetic_batches = siamese_pairs(
                pair_key, self.render(synthetic), real, counts, class_ids, self.batch_real,
                self.strategy,
            )  # fmt: skip
            return mean_embedding_loss(self.model, params, real_batches, synthetic_batches, weights)

        return image_step(self.optimizer, loss_fn, synthetic, opt_state)

    def step_args(self, state: DistillState, key: jax.Array, real: ShardedReal) -> tuple:
        return (state.synthetic, state.opt_state, key, *real.arrays())

    def iteration(
        self, state: DistillState, key: jax.Array, real: ShardedReal
    ) -> tuple[DistillState, dict[str, jax.Array]]:
        synthetic, opt_state, loss = self.step(*self.step_args(state, key, real))
        return DistillState(synthetic, opt_state), {"loss": loss[0]}

    def flops_per_iteration(self, state: DistillState, key: jax.Array, real: ShardedReal):
        """XLA's FLOP count of one iteration over all devices (None where unknown)."""
        cost = flops.step_cost(self.step, *self.step_args(state, key, real))
        return cost.total if cost else None
