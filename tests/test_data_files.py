"""``data=file``: token ids stay integers, floats are standardised on request, and a bad file
is one line naming it (exit 2, before any trial, nothing made)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, TINY, run_subprocess
from tests.test_bad_input import _made
from tuner.data import ArrayFile
from tuner.data._file import read_data_file
from tuner.errors import UserError

TINY_FILE = [o for o in TINY if not o.startswith("data.")]
TOKENS = ["data=file", "model._target_=tests.token_model.TokenBag", "optimizer=adamw", "search=lr"]


def _tokens(path: Path, rows: int = 300, length: int = 8, vocab: int = 10) -> Path:
    """A sequence task on int64 token ids: is the count of token 0 even?"""
    rng = np.random.default_rng(0)
    x = rng.integers(0, vocab, size=(rows, length), dtype=np.int64)
    np.savez(path, x=x, y=((x == 0).sum(axis=1) % 2).astype(np.int64))
    return path


def test_token_ids_stay_int64_for_an_embedding(tmp_path):
    data = ArrayFile(path=str(_tokens(tmp_path / "tokens.npz")))
    x, _y = data.split("train")
    assert x.dtype == torch.int64 and int(x.min()) == 0 and data.vocab_size == 10


def test_an_embedding_model_trains_on_token_ids_through_data_file(tmp_path, run_cli):
    path = _tokens(tmp_path / "tokens.npz")
    code, out, err = run_cli(*TINY_FILE, *TOKENS, f"data.path={path}")
    assert code == 0, err
    assert "2/2" in out or "COMPLETE" in out, out


@pytest.mark.parametrize("standardize", [True, False])
def test_float_inputs_are_standardised_unless_switched_off(tmp_path, standardize):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "f.npz", x=rng.normal(5.0, 3.0, size=(200, 4)), y=rng.integers(0, 2, 200))
    x, _ = ArrayFile(path=str(tmp_path / "f.npz"), standardize=standardize).split("train")
    assert x.dtype == torch.float32
    assert abs(float(x.mean())) < 0.2 if standardize else abs(float(x.mean()) - 5.0) < 0.5


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["data.path={floats}", "+model.vocab_size=10"], "fails on the first batch (x float32 (4, 8))"),
        (["data.path={tokens}", "+model.vocab_size=4"], "IndexError"),
        (["data.path={tokens}", "+model.num_classes=1"], "gives 1 class scores"),
    ],
)
def test_a_model_that_does_not_fit_the_data_is_one_line_at_the_first_batch(tmp_path, run_cli, extra, words):
    np.savez(tmp_path / "floats.npz", x=np.random.default_rng(0).normal(size=(100, 8)), y=np.arange(100) % 2)
    places = {"floats": tmp_path / "floats.npz", "tokens": _tokens(tmp_path / "tokens.npz")}
    code, out, err = run_cli(*TINY_FILE, *TOKENS, *(e.format(**places) for e in extra))
    assert code == 2, err
    assert (
        err.count("\n") == 1 and err.startswith("error: model='tests.token_model.TokenBag'") and words in err
    ), err
    assert "Traceback" not in out + err
    assert not (tmp_path / "runs" / "mlflow.db").exists()


def _npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


_rng = np.random.default_rng(2)
_X, _Y = _rng.normal(size=(40, 3)), _rng.integers(0, 3, 40)
_CSV_HEAD = "a,b,label\n"
# (id, file name, contents, words the one line must hold)
BAD_FILES = [
    ("empty-npz", "d.npz", b"", "not a readable .npz"),
    ("truncated-npz", "d.npz", _npz(x=_X, y=_Y)[:300], "not a readable .npz"),
    ("npz-without-arrays", "d.npz", _npz(), "holds no arrays"),
    ("zero-rows", "d.npz", _npz(x=np.zeros((0, 3)), y=np.zeros(0, dtype=int)), "x has no rows"),
    ("empty-csv", "d.csv", b"", "is empty"),
    ("header-only-csv", "d.csv", _CSV_HEAD.encode(), "x has no rows"),
    ("x-and-y-lengths-differ", "d.npz", _npz(x=_X, y=_Y[:30]), "x has 40 rows but y has shape (30,)"),
    ("string-labels", "d.npz", _npz(x=_X, y=np.array(["cat", "dog"] * 20)), "y holds <U3 labels"),
    ("nan-features", "d.npz", _npz(x=np.where(_X > 1.5, np.nan, _X), y=_Y), "NaN or infinite"),
    (
        "text-column-in-csv",
        "d.csv",
        (_CSV_HEAD + "1,2,0\n3,red,1\n").encode(),
        "column 'b' holds text ('red') on line 3",
    ),
    ("three-rows", "d.npz", _npz(x=_X[:3], y=np.array([0, 1, 0])), "has 3 rows; give at least 10"),
    ("single-class", "d.npz", _npz(x=_X, y=np.ones(40, dtype=int)), "every training label is 1"),
    ("negative-labels", "d.npz", _npz(x=_X, y=_Y - 1), "y holds the label -1"),
    ("ragged-csv", "d.csv", (_CSV_HEAD + "1,2,0\n3,1\n").encode(), "line 3 has 2 fields"),
]


@pytest.mark.parametrize(
    ("name", "content", "words"), [pytest.param(n, c, w, id=i) for i, n, c, w in BAD_FILES]
)
def test_a_bad_data_file_is_one_line_naming_it_and_makes_nothing(tmp_path, run_cli, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    before = _made(tmp_path / "runs")
    code, out, err = run_cli(*TINY_FILE, "data=file", f"data.path={path}", "model=mlp")
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: data.path='{path}': "), err
    assert words in err, err
    assert "Traceback" not in out + err
    assert _made(tmp_path / "runs") == before


# Files a person might hand over: a good data set, then broken in one of the ways files break.
_DTYPES = st.sampled_from(["int64", "int8", "uint8", "float32", "float64", "bool", "str", "complex"])


@st.composite
def data_files(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = draw(st.integers(0, 40))
    cols = draw(st.integers(1, 4))
    x = np.random.default_rng(draw(st.integers(0, 9))).normal(size=(rows, cols)) * 3
    y = np.arange(rows) % draw(st.integers(1, 3)) - draw(st.sampled_from([0, 0, 1]))
    x = x.astype(draw(_DTYPES))
    y = y.astype(draw(_DTYPES))
    if draw(st.booleans()) and rows and x.dtype.kind == "f":
        x[draw(st.integers(0, rows - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    if draw(st.booleans()):
        y = y[: draw(st.integers(0, rows))]  # mismatched lengths
    if draw(st.booleans()):  # a csv of the same table
        lines = [",".join([*(f"f{i}" for i in range(cols)), "label"])]
        lines += [",".join(map(str, [*xr, yr])) for xr, yr in zip(x, y, strict=False)]
        content, name = "\n".join(lines).encode(), "d.csv"
    else:
        content, name = _npz(x=x, y=y), "d.npz"
    if draw(st.booleans()):
        content = content[: draw(st.integers(0, len(content)))]  # truncated, maybe empty
    return name, content


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data_files())
def test_fuzz_any_data_file_loads_or_gives_one_line(tmp_path, file):
    """The function the command line checks files with: a usable data set or one UserError line."""
    name, content = file
    path = tmp_path / name
    path.write_bytes(content)
    try:
        read_data_file(path)
    except UserError as error:
        assert "\n" not in str(error) and str(path) in str(error), str(error)
        event(f"refused: {error.fix.split(';')[0][:30]}")
        return
    event("loads")
    data = ArrayFile(path=str(path), batch_size=8)  # what passes the check trains
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        assert len(x) == len(y) > 0
        assert not x.is_floating_point() or bool(torch.isfinite(x).all())


def test_a_note_on_ignored_model_keys_once_per_study(tmp_path):
    """``model._target_=`` on model=cnn1d leaves channels and kernel_size: one note, before the first trial."""
    path = _tokens(tmp_path / "tokens.npz")
    done = run_subprocess(
        "--quiet",
        *TINY_FILE,
        *TOKENS,
        f"data.path={path}",
        "study.n_trials=3",
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    notes = [line for line in (done.stdout + done.stderr).splitlines() if "are not arguments of" in line]
    assert notes == [
        "note: model keys channels, kernel_size (left from model=cnn1d) are not arguments of "
        "tests.token_model.TokenBag; ignored"
    ]
