"""A distilled (synthetic or selected) set: its images, how it was made, and its files.

In a distillation workdir it is two files: `synthetic.npz` (`images` float32 [N, H, W, 3] in the
source's normalised space, `labels` int32 [N], class by class, and, for sets that learn their
labels (FRePo), `label_vectors` float32 [N, C]) and `labels.json` (class names,
mean and std of the normalisation, image size, images per class, method); a set learned in a
ZCA-whitened space (MTT, FRePo on CIFAR) adds `whitening.npz` (distill/zca.py). `load_synthetic`
reads them without executing anything (npz with allow_pickle=False); `config.data.source =
"distilled"` serves them to any training config (bird_jax.data.distilled).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bird_jax.distill import zca
from bird_jax.distill.real import RealData, sample_per_class

IMAGES_FILE = "synthetic.npz"
LABELS_FILE = "labels.json"
INITS = ("real", "noise")


def flatten_classes(images) -> tuple[np.ndarray, np.ndarray]:
    """Class-major images [C, n, ...] -> images [C * n, ...] and their labels [C * n]."""
    images = np.asarray(images)
    labels = np.repeat(np.arange(images.shape[0], dtype=np.int32), images.shape[1])
    return images.reshape(-1, *images.shape[2:]), labels


@dataclasses.dataclass(frozen=True)
class SyntheticSet:
    """`images` float32 [C, ipc, H, W, 3] (normalised, class-major), what they stand for, and
    learned `label_vectors` [C, ipc, C] where the method learns them (None: the class), the
    ZCA `whitening` of the space the images live in (None: the normalised space), and the
    `learning_rate` to train on them with where the method learns it (MTT; None: the
    protocol's)."""

    images: np.ndarray
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    method: str
    label_vectors: np.ndarray | None = None
    whitening: zca.Whitening | None = None
    learning_rate: float | None = None

    @property
    def ipc(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[2]

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """Images [C * ipc, H, W, 3] and labels [C * ipc], class by class."""
        return flatten_classes(self.images)

    def normalised_images(self) -> np.ndarray:
        """The images in the source's normalised space (coloured back where whitened)."""
        if self.whitening is None:
            return self.images
        return self.whitening.colour(self.images)

    def training_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Images and what a network learns for them: the label vectors [C * ipc, C] where the
        set has them, else the class labels [C * ipc]."""
        images, labels = self.flat()
        if self.label_vectors is None:
            return images, labels
        return images, self.label_vectors.reshape(len(labels), -1)

    def metadata(self) -> dict:
        return {
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "image_size": self.image_size,
            "ipc": self.ipc,
            "method": self.method,
            "label_vectors": self.label_vectors is not None,
            "zca_reg": None if self.whitening is None else self.whitening.reg,
            "learning_rate": self.learning_rate,
        }


def initial_images(key: jax.Array, real: RealData, ipc: int, init: str) -> np.ndarray:
    """[C, ipc, H, W, 3]: distinct real images of each class, or N(0, 1) noise (the papers'
    starts, both in the normalised space)."""
    if init not in INITS:
        raise ValueError(f"distill.init must be one of {INITS}, got {init!r}.")
    shape = (real.num_classes, ipc, *real.image_shape)
    if init == "noise":
        return np.asarray(jax.random.normal(key, shape, jnp.float32))
    class_ids = jnp.arange(real.num_classes)
    return np.asarray(sample_per_class(key, real.images, real.counts, class_ids, ipc))


def save_synthetic(synthetic: SyntheticSet, directory: str | Path) -> None:
    """Writes synthetic.npz and labels.json into `directory` (each replaced atomically), and
    the set's whitening.npz where it has one and the directory none yet."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = synthetic.flat()
    arrays = {"images": images.astype(np.float32), "labels": labels}
    if synthetic.label_vectors is not None:
        arrays["label_vectors"] = synthetic.training_targets()[1].astype(np.float32)
    partial = directory / (IMAGES_FILE + ".partial")
    with open(partial, "wb") as file:
        np.savez(file, **arrays)
    partial.replace(directory / IMAGES_FILE)
    if synthetic.whitening is not None and not (directory / zca.FILE).is_file():
        zca.save(synthetic.whitening, directory)  # once: a run's whitening does not change
    partial = directory / (LABELS_FILE + ".partial")
    partial.write_text(json.dumps(synthetic.metadata(), indent=1))
    partial.replace(directory / LABELS_FILE)


def _fail(directory: Path, problem: str) -> ValueError:
    return ValueError(f"{directory} is not a distilled set: {problem}.")


def load_synthetic(directory: str | Path) -> SyntheticSet:
    """Reads a set written by save_synthetic; ValueError/FileNotFoundError saying what is wrong."""
    directory = Path(directory)
    for name in (IMAGES_FILE, LABELS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"No {name} in {directory}: point data.root at the workdir of a "
                "`python -m bird_jax.distill` run."
            )
    try:
        meta = json.loads((directory / LABELS_FILE).read_text())
        with np.load(directory / IMAGES_FILE, allow_pickle=False) as arrays:
            images, labels = arrays["images"], arrays["labels"]
            vectors = arrays.get("label_vectors")
    except (ValueError, KeyError, OSError) as error:
        raise _fail(directory, f"unreadable ({error})") from None
    missing = {"class_names", "mean", "std", "method"} - set(meta)
    if missing:
        raise _fail(directory, f"{LABELS_FILE} lacks {sorted(missing)}")
    num_classes = len(meta["class_names"])
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels) or not num_classes:
        raise _fail(directory, f"images {images.shape} and labels {labels.shape} do not match")
    ipc, remainder = divmod(len(labels), num_classes)
    expected = np.repeat(np.arange(num_classes), ipc)
    if remainder or not np.array_equal(labels, expected):
        raise _fail(directory, f"labels are not {ipc} per class in class order")
    if vectors is not None and vectors.shape != (len(labels), num_classes):
        raise _fail(directory, f"label_vectors {vectors.shape} are not one per image and class")
    whitening = None
    if meta.get("zca_reg") is not None:
        whitening = zca.load(directory)
        if whitening.mean.size != np.prod(images.shape[1:]):
            raise _fail(directory, f"{zca.FILE} does not fit images of {images.shape[1:]}")
        if whitening.reg != meta["zca_reg"]:
            raise _fail(directory, f"{zca.FILE} has ridge {whitening.reg}, {LABELS_FILE} "
                                   f"{meta['zca_reg']}")  # fmt: skip
    return SyntheticSet(
        images.astype(np.float32).reshape(num_classes, ipc, *images.shape[1:]),
        list(meta["class_names"]),
        tuple(meta["mean"]),
        tuple(meta["std"]),
        meta["method"],
        None if vectors is None else vectors.astype(np.float32).reshape(num_classes, ipc, -1),
        whitening,
        meta.get("learning_rate"),
    )


def check_matches(synthetic: SyntheticSet, class_names: list[str], mean, std) -> None:
    """ValueError if `synthetic` was distilled from other classes or another normalisation than
    the data it is evaluated on."""
    if list(synthetic.class_names) != list(class_names):
        differ = sorted(set(synthetic.class_names) ^ set(class_names))[:5]
        raise ValueError(
            f"The distilled set's {len(synthetic.class_names)} classes are not the evaluation "
            f"data's {len(class_names)} in the same order (e.g. {differ or 'order differs'}): "
            "evaluate on the dataset it was distilled from."
        )
    for name, ours, theirs in (("mean", synthetic.mean, mean), ("std", synthetic.std, std)):
        if not np.allclose(ours, theirs, atol=1e-6):
            raise ValueError(
                f"The distilled set was normalised with {name} {list(ours)}, the evaluation data "
                f"with {list(theirs)}: set data.{name} to the set's."
            )
