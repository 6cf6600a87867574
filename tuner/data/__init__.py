"""Built-in data sets, each a LightningDataModule that needs no download."""

from __future__ import annotations

from tuner.data._arrays import ArrayDataModule, BatchLoader
from tuner.data._builtin import MNIST1D, Digits, MNISTSubset, ModularAddition
from tuner.data._file import ArrayFile

__all__ = ["MNIST1D", "ArrayDataModule", "ArrayFile", "BatchLoader", "Digits", "MNISTSubset", "ModularAddition"]
