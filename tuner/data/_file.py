"""A person's own data set, read from a ``.npz`` or ``.csv`` file.

Everything wrong with the file is found when it is read, before any trial, and said in
one line that names the file: a traceback from deep in numpy, or a study whose trials all
fail or turn NaN, would point the person at the wrong thing (the model, the LR).
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from pathlib import Path

import numpy as np

from tuner.data._arrays import ArrayDataModule
from tuner.data._builtin import _holdout
from tuner.errors import UserError

#: Fewest rows that leave every split (train, validation, test) a few samples.
MIN_ROWS = 10
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class ArrayFile(ArrayDataModule):
    """Classification data from a file: ``.npz`` arrays or a ``.csv`` table.

    A ``.npz`` file holds the inputs under ``x_key`` and the integer labels under
    ``y_key``; when it also holds ``x_test``/``y_test`` those are the test split,
    otherwise ``test_fraction`` of the rows are held out. A ``.csv`` file has a header
    row, one sample per row, numeric columns, and the label in the column ``label``.
    Integer inputs (token ids) stay integers; float inputs are standardised unless
    ``standardize`` is false.

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

    def load_arrays(self) -> Arrays:
        return read_data_file(
            self.path, x_key=self.x_key, y_key=self.y_key, label=self.label, test_fraction=self.test_fraction
        )


def read_data_file(
    path: Path, *, x_key: str = "x", y_key: str = "y", label: str = "label", test_fraction: float = 0.2
) -> Arrays:
    """``x_train, y_train, x_test, y_test`` of a data file, checked.

    Raises:
        UserError: one line naming the file and what is wrong with it.
    """
    check_data_file(path)
    if path.suffix == ".npz":
        x, y, test = _npz(path, x_key, y_key)
    else:
        x, y = _csv(path, label)
        test = None
    _check_split(path, x, y, "")
    if test is None:
        if len(x) < MIN_ROWS:
            raise _bad(
                path,
                f"has {len(x)} rows; give at least {MIN_ROWS} (train, validation and test take a share each)",
            )
        x, y, x_test, y_test = _holdout(x, y, test_fraction=test_fraction, seed=1234)
    else:
        x_test, y_test = test
        _check_split(path, x_test, y_test, "_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise _bad(path, f"x has rows of shape {x.shape[1:]} but x_test {x_test.shape[1:]}")
    classes = np.unique(y)
    if len(classes) < 2:
        raise _bad(path, f"every training label is {classes[0]}; a classifier needs at least two classes")
    return x, y, x_test, y_test


def check_data_file(path: Path) -> None:
    """Raises a :class:`UserError` on ``data.path`` unless it names a readable data file."""
    if not path.is_file():
        raise UserError("data.path", str(path), "no such file; give the path of a .npz or .csv file")
    if path.suffix not in (".npz", ".csv"):
        raise UserError("data.path", str(path), "give a .npz or .csv file")


def _bad(path: Path, what: str) -> UserError:
    return UserError("data.path", str(path), what)


def _npz(
    path: Path, x_key: str, y_key: str
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    # Arrays are read lazily from the zip: a truncated member fails on access, not on open.
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if not arrays.files:
                raise _bad(path, f"holds no arrays; save the inputs as {x_key} and the labels as {y_key}")
            for name, key in ((x_key, "data.x_key"), (y_key, "data.y_key")):
                if name not in arrays:
                    raise UserError(key, name, f"{path} holds {sorted(arrays.files)}; name one of those")
            x, y = arrays[x_key], arrays[y_key]
            test = (arrays["x_test"], arrays["y_test"]) if {"x_test", "y_test"} <= set(arrays.files) else None
    except UserError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _bad(path, "holds object arrays (strings or Python objects); save numbers only") from None
        raise _bad(path, f"is not a readable .npz file ({_first_line(exc)})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise _bad(path, f"is not a readable .npz file ({type(exc).__name__}: {_first_line(exc)})") from None
    return x, y, test


def _csv(path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise _bad(path, "is empty; give a header row, then one row per sample")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    if label not in header:
        raise UserError("data.label", label, f"{path} has the columns {header}; name one of those")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise _bad(path, f"line {line} has {len(row)} fields but the header has {len(header)}")
    columns = {name: _numbers(path, name, [row[i] for row in body]) for i, name in enumerate(header)}
    features = [name for name in header if name != label]
    if not features:
        raise _bad(path, f"has only the label column {label!r}; give feature columns too")
    x = np.stack([columns[name] for name in features], axis=1) if body else np.empty((0, len(features)))
    return x, columns[label]


def _numbers(path: Path, column: str, cells: list[str]) -> np.ndarray:
    """A column as numbers; one line naming the column and the first cell that is not one."""
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        line, cell = next((i, c) for i, c in enumerate(cells, start=2) if not _is_number(c))
        what = "is empty" if not cell.strip() else f"holds text ({cell.strip()[:20]!r})"
        raise _bad(path, f"column {column!r} {what} on line {line}; every column must be numeric") from None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _check_split(path: Path, x: np.ndarray, y: np.ndarray, suffix: str) -> None:
    """The inputs and labels of one split: numbers, one label per row, no NaN, labels 0..C-1."""
    xs, ys = f"x{suffix}", f"y{suffix}"
    if x.ndim < 2:
        raise _bad(path, f"{xs} has shape {x.shape}; give one row per sample: (rows, features...)")
    if len(x) == 0:
        raise _bad(path, f"{xs} has no rows")
    if x.dtype.kind not in "biuf":
        raise _bad(path, f"{xs} holds {x.dtype} values; give numbers (integer token ids or floats)")
    if y.ndim != 1 or len(y) != len(x):
        raise _bad(path, f"{xs} has {len(x)} rows but {ys} has shape {y.shape}; give one label per row")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise _bad(
                path,
                f"{xs} has NaN or infinite values in {int(bad.sum())} rows (first: row {int(bad.argmax())})",
            )
    if y.dtype.kind not in "biuf":
        raise _bad(path, f"{ys} holds {y.dtype} labels; give class numbers 0, 1, 2, ...")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise _bad(path, f"{ys} holds fractional or NaN labels; give class numbers 0, 1, 2, ...")
    if y.min() < 0:
        raise _bad(path, f"{ys} holds the label {y.min():g}; labels are class numbers 0, 1, 2, ...")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
