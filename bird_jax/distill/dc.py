"""DC, gradient matching (Zhao, Mopuri & Bilen, "Dataset Condensation with Gradient Matching",
ICLR 2021), and DSA, the same with Differentiable Siamese Augmentation (Zhao & Bilen, ICML
2021); official code `main.py` of VICO-UoE/DatasetCondensation.

An iteration draws a fresh network and alternates `outer_loop` times: one SGD step (momentum
0.5) on the synthetic images against the summed per-class distance between the network's
gradients on real and on synthetic images (matching.gradient_distance), then `inner_loop`
epochs of SGD (lr_net) of the network on the synthetic set (per-image DSA for DSA). The
matching step is split by class over the devices; the network's epochs run on one device, since
every device needs the same network.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from bird_jax.distill import nets
from bird_jax.distill.iterative import DistillState, MatchingMethod, ShardedReal, image_step
from bird_jax.distill.matching import gradient_matching_loss, siamese_pairs
from bird_jax.distill.shards import AXIS
from bird_jax.distill.synthetic import flatten_classes
from bird_jax.efficiency import flops

# The papers' (outer_loop, inner_loop) for 1, 10 and 50 images per class.
LOOPS = {1: (1, 1), 10: (10, 50), 50: (50, 10)}


def default_loops(ipc: int) -> tuple[int, int]:
    """The papers' loops for `ipc`; between their settings, those of the next larger one."""
    return next((LOOPS[k] for k in sorted(LOOPS) if ipc <= k), LOOPS[50])


class GradientMatching(MatchingMethod):
    """One DC (strategy 'none') or DSA iteration per call."""

    def __init__(
        self,
        model: nn.Module,
        image_shape: tuple[int, ...],
        *,
        outer_loop: int,
        inner_loop: int,
        lr_net: float,
        batch_train: int,
        **matching,
    ):
        super().__init__(model, image_shape, **matching)
        self.outer_loop, self.inner_loop, self.batch_train = outer_loop, inner_loop, batch_train
        self.trainer = nets.NetTrainer(model, nets.sgd(lr_net), self.strategy)
        self.match = jax.pmap(self._match, axis_name=AXIS, in_axes=(None, 0, 0, None, 0, 0, 0, 0))

    def _match(self, params, synthetic, opt_state, key, real, counts, class_ids, weights):
        def loss_fn(synthetic):
            real_batches, synthetic_batches = siamese_pairs(
                key, synthetic, real, counts, class_ids, self.batch_real, self.strategy
            )
            return gradient_matching_loss(
                self.model, params, real_batches, synthetic_batches, class_ids, weights
            )

        return image_step(self.optimizer, loss_fn, synthetic, opt_state)

    def _match_args(self, params, state: DistillState, key, real: ShardedReal) -> tuple:
        return (params, state.synthetic, state.opt_state, key, *real.arrays())

    def _flat_set(self, state: DistillState, real: ShardedReal) -> tuple[np.ndarray, np.ndarray]:
        return flatten_classes(real.shards.merge(state.synthetic))

    def iteration(
        self, state: DistillState, key: jax.Array, real: ShardedReal
    ) -> tuple[DistillState, dict[str, jax.Array]]:
        net_key, key = jax.random.split(key)
        net = self.trainer.init(net_key, self.image_shape)
        losses = []
        for outer in range(self.outer_loop):
            outer_key = jax.random.fold_in(key, outer)
            match_key, train_key = jax.random.split(outer_key)
            synthetic, opt_state, loss = self.match(
                *self._match_args(net.params, state, match_key, real)
            )
            state = DistillState(synthetic, opt_state)
            losses.append(loss[0])
            if outer == self.outer_loop - 1:
                break
            images, labels = self._flat_set(state, real)
            for inner in range(self.inner_loop):
                net, _ = self.trainer.train_epoch(
                    net, images, labels, jax.random.fold_in(train_key, inner), self.batch_train
                )
        return state, {"loss": sum(losses) / len(losses)}

    def flops_per_iteration(self, state: DistillState, key: jax.Array, real: ShardedReal):
        """XLA's FLOP count of one iteration over all devices (None where unknown)."""
        net = self.trainer.init(key, self.image_shape)
        match = flops.step_cost(self.match, *self._match_args(net.params, state, key, real))
        images, labels = self._flat_set(state, real)
        batch = min(self.batch_train, len(labels))
        train = flops.step_cost(
            lambda *args: self.trainer.step(*args), net, images[:batch], labels[:batch], key
        )
        if match is None or train is None:
            return None
        batches = -(-len(labels) // self.batch_train)
        net_steps = (self.outer_loop - 1) * self.inner_loop * batches
        return self.outer_loop * match.total + net_steps * train.total
