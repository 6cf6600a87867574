"""A person's own data set, read from a ``.npz`` or ``.csv`` file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuner.data._arrays import ArrayDataModule
from tuner.data._builtin import _holdout
from tuner.errors import UserError


class ArrayFile(ArrayDataModule):
    """Classification data from a file: ``.npz`` arrays or a ``.csv`` table.

    A ``.npz`` file holds the inputs under ``x_key`` and the integer labels under
    ``y_key``; when it also holds ``x_test``/``y_test`` those are the test split,
    otherwise ``test_fraction`` of the rows are held out. A ``.csv`` file has a header
    row, one sample per row, numeric columns, and the label in the column ``label``.

    Args:
        path: The file.
        x_key: Array of inputs in a ``.npz`` file.
        y_key: Array of labels in a ``.npz`` file.
        label: Label column of a ``.csv`` file.
        test_fraction: Share held out as the test split when the file has none.
        **kwargs: Passed to :class:`ArrayDataModule`.
    """

    def __init__(
        self,
        *,
        path: str,
        x_key: str = "x",
        y_key: str = "y",
        label: str = "label",
        test_fraction: float = 0.2,
        **kwargs: object,
    ) -> None:
        self.path = Path(path).expanduser()
        self.x_key, self.y_key, self.label = x_key, y_key, label
        self.test_fraction = test_fraction
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        check_data_file(self.path)
        if self.path.suffix == ".npz":
            return self._npz()
        return self._csv()

    def _npz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with np.load(self.path) as arrays:
            for name, key in ((self.x_key, "data.x_key"), (self.y_key, "data.y_key")):
                if name not in arrays:
                    raise UserError(key, name, f"{self.path} holds {sorted(arrays.files)}; name one of those")
            x, y = arrays[self.x_key], arrays[self.y_key]
            if "x_test" in arrays and "y_test" in arrays:
                return x, y, arrays["x_test"], arrays["y_test"]
        return _holdout(x, y, test_fraction=self.test_fraction, seed=1234)

    def _csv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        table = np.genfromtxt(self.path, delimiter=",", names=True)
        names = list(table.dtype.names or ())
        if self.label not in names:
            raise UserError(
                "data.label", self.label, f"{self.path} has the columns {names}; name one of those"
            )
        features = [n for n in names if n != self.label]
        x = np.stack([table[n] for n in features], axis=1).astype(np.float32)
        y = table[self.label].astype(np.int64)
        return _holdout(x, y, test_fraction=self.test_fraction, seed=1234)


def check_data_file(path: Path) -> None:
    """Raises a :class:`UserError` on ``data.path`` unless it names a readable data file."""
    if not path.is_file():
        raise UserError("data.path", str(path), "no such file; give the path of a .npz or .csv file")
    if path.suffix not in (".npz", ".csv"):
        raise UserError("data.path", str(path), "give a .npz or .csv file")
