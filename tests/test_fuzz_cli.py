"""Generated command lines: each ends with exit 0 or one ``error:`` line and exit 2, never a traceback.

Keys come from the composed config (``python -m tuner --cfg job``); values are of the
wrong type, out of range, or odd strings (spaces, unicode, quotes, Hydra's own syntax).
Each command runs in this process through ``main(check_only=True)``: the command line
and every check of the config, as a study would start, without training anything.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tuner.cli import main


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _keys(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix[:-1]


def _run(args: list[str], *, check_only: bool = True) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args, check_only=check_only)
    return code, out.getvalue(), err.getvalue()


def _config_keys() -> list[str]:
    code, out, err = _run(["--cfg", "job"], check_only=False)
    assert code == 0, err
    # Not the _target_ keys: their values are imported, and an arbitrary module's import
    # may act (the standard library's antigravity opens a browser).
    return sorted(k for k in _keys(yaml.safe_load(out)) if not k.endswith("_target_"))


KEYS = _config_keys()
GROUPS = sorted({k.split(".")[0] for k in KEYS} - {"paths", "hydra"})
ODD = " \t'\"é中😀?=&:/\\$%{}[](),@#*!~+-_.\x00"
NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1e309", "-0.0", "1e-320", "nan", "-inf", "inf", "0x10", "1_000"]),
)
TEXT = st.text(alphabet=st.sampled_from(ODD + "abcXYZ019"), max_size=12)
VALUES = st.one_of(
    NUMBERS.map(str),
    st.sampled_from(
        ["true", "false", "null", "[]", "{}", "[1,2]", "{a: 1}", "'", "''", "???", "${study.name}"]
    ),
    TEXT,
    TEXT.map(lambda t: f"'{t}'"),
    st.sampled_from(["auto", "gpu", "cpu", "ddp", "bogus", "16-mixed", "../x", "http://u:p@127.0.0.1:9"]),
)
OVERRIDE = st.one_of(
    st.tuples(st.sampled_from(KEYS), VALUES).map("=".join),
    st.tuples(st.sampled_from(GROUPS), TEXT).map("=".join),
    st.tuples(
        st.sampled_from(["+", "~", "++", ""]), st.sampled_from(KEYS), st.sampled_from(["x", ""]), VALUES
    ).map(lambda p: f"{p[0]}{p[1]}{p[2]}={p[3]}"),
    TEXT,
    st.sampled_from(["--quiet", "--bogus", "--cfg=all", "-x"]),
)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same 200 command lines on every machine and run
    # No shrinking: a failing command line is reported as generated (shrinking one took
    # minutes); the test's time stays that of the 200 commands, about a minute.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(OVERRIDE, min_size=1, max_size=3))
def test_any_command_line_is_done_or_one_error_line(args):
    args = ["trainer.max_steps=60", "trainer.val_check_interval=20", *args]
    code, out, err = _run(args)
    assert "Traceback" not in out + err, (args, err)
    assert code in (0, 2), (args, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)


@pytest.mark.parametrize(
    "args",
    [
        ["study.name=../../evil"],
        ["trainer.devices=0"],
        ["study.name=été"],
        ["tracking.uri=http://h/?password=hunter2"],
        ["--badflag"],
    ],
)
def test_known_bad_command_lines(args):
    code, out, err = _run(args)
    assert code == 2 and err.startswith("error: ") and "hunter2" not in out + err
