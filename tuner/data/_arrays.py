"""In-memory classification data: train / validation / test splits of tensors.

Small tabular and 1-D data sets fit in memory, so batches are sliced straight out of
one tensor instead of collating samples one by one (which cost about 1 ms a batch,
as much as a tiny model's whole step).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytorch_lightning as pl
import torch


class BatchLoader:
    """Iterates over mini-batches of in-memory tensors, reshuffled every epoch.

    Args:
        x: Inputs, first dimension is the sample.
        y: Integer class labels.
        batch_size: Samples per batch (the last batch may be smaller).
        shuffle: Draw a new permutation every epoch.
        seed: Seed of the permutation stream, so a trial sees the same batches on rerun.
        shard: ``(rank, world_size)`` under DDP: each rank takes its share of every batch,
            so the batch size stays the trial's total across ranks.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        #: Examples it holds (the pruner's noise rule reads the validation set's).
        self.examples = len(x)
        self.shard = shard
        #: The permutation stream; reseeding it changes the batch order from the next epoch on.
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        rank, world = self.shard
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            if world > 1:
                if len(index) < world:
                    continue  # a tail too short to share: every rank skips it alike
                index = index[rank::world]
            yield self.x[index], self.y[index]


class ArrayDataModule(pl.LightningDataModule):
    """A classification data set held as arrays, split into train, validation and test.

    The validation split is carved out of the training data: a study selects on it and
    touches the test split only to report the chosen trials.

    Subclasses implement :meth:`load_arrays`.

    Args:
        batch_size: Training batch size.
        val_fraction: Share of the training data held out for validation.
        seed: Seed of the split and of the batch order.
        eval_batch_size: Batch size for validation and test (large: no gradients).
        standardize: Scale float inputs to mean 0, standard deviation 1 (the training
            split's). Integer inputs (token ids, categories) are never scaled: they stay
            ``int64`` for an embedding.
    """

    #: Shape of one input sample, set once the data is loaded.
    input_shape: tuple[int, ...]
    num_classes: int
    #: Only for integer inputs (token ids): the largest id plus one.
    vocab_size: int

    def __init__(
        self,
        *,
        batch_size: int = 128,
        val_fraction: float = 0.2,
        seed: int = 0,
        eval_batch_size: int = 1024,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        self.standardize = standardize
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.eval_batch_size = eval_batch_size
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._load()

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``x_train, y_train, x_test, y_test`` as numpy arrays."""
        raise NotImplementedError

    def _load(self) -> None:
        x_train, y_train, x_test, y_test = self.load_arrays()
        tokens = x_train.dtype.kind in "biu"
        mean, std = (x_train.mean(), x_train.std() + 1e-8) if self.standardize and not tokens else (0.0, 1.0)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(x_train))
        n_val = round(len(x_train) * self.val_fraction)
        val_idx, train_idx = order[:n_val], order[n_val:]

        def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            if tokens:
                return torch.as_tensor(x, dtype=torch.long), torch.as_tensor(y, dtype=torch.long)
            xt = torch.as_tensor((x - mean) / std, dtype=torch.float32)
            return xt, torch.as_tensor(y, dtype=torch.long)

        self._splits = {
            "train": tensors(x_train[train_idx], y_train[train_idx]),
            "val": tensors(x_train[val_idx], y_train[val_idx]),
            "test": tensors(x_test, y_test),
        }
        self.input_shape = tuple(self._splits["train"][0].shape[1:])
        self.num_classes = int(max(y_train.max(), y_test.max())) + 1
        if tokens:  # an embedding's table size: the largest token id of any split, plus one
            self.vocab_size = int(max(x_train.max(), x_test.max())) + 1

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The tensors of one split: ``train``, ``val`` or ``test``."""
        return self._splits[name]

    def _shard(self) -> tuple[int, int]:
        """This process's ``(rank, world_size)`` under DDP: from the trainer, else torchrun's env.

        The loaders may be made before ``fit`` attaches a trainer; the processes of a
        multi-device trial carry ``RANK`` and ``WORLD_SIZE`` (see ``tuner.training.ddp``).
        """
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return trainer.global_rank, trainer.world_size
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def train_dataloader(self) -> BatchLoader:
        x, y = self._splits["train"]
        return BatchLoader(
            x, y, batch_size=self.batch_size, shuffle=True, seed=self.seed, shard=self._shard()
        )

    def val_dataloader(self) -> BatchLoader:
        x, y = self._splits["val"]
        return BatchLoader(x, y, batch_size=self.eval_batch_size, shuffle=False, shard=self._shard())

    def test_dataloader(self) -> BatchLoader:
        x, y = self._splits["test"]
        return BatchLoader(x, y, batch_size=self.eval_batch_size, shuffle=False, shard=self._shard())
