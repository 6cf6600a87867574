"""``mode=schedule`` draws the configured LR curve and writes the values it plotted."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from tuner.schedule.functions import lr_multiplier


def _written(out: str) -> tuple[Path, list[dict[str, str]]]:
    png = Path(re.search(r"^plot:\s+(\S+)$", out, flags=re.M).group(1))  # type: ignore[union-attr]
    values = Path(re.search(r"^values:\s+(\S+)$", out, flags=re.M).group(1))  # type: ignore[union-attr]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.parent == values.parent
    with values.open() as handle:
        return png, list(csv.DictReader(handle))


def test_cosine_with_warmup_matches_the_closed_form(tmp_path, run_cli):
    code, out, err = run_cli(
        "mode=schedule",
        "schedule=warmup_cosine",
        "trainer.max_steps=200",
        "optimizer.lr=0.5",
        "schedule.warmup_fraction=0.1",
        "study.name=plot",
    )
    assert code == 0, err
    png, rows = _written(out)
    assert png.is_relative_to(tmp_path / "runs" / "studies" / "plot")
    lrs = [float(r["lr"]) for r in rows]
    assert [int(r["step"]) for r in rows] == list(range(200))
    warmup, total, peak = 20, 200, 0.5
    # Written out by hand: linear warmup (step+1)/W, then half a cosine to 0 at step 200.
    for step in range(total):
        if step < warmup:
            expected = peak * (step + 1) / warmup
        else:
            expected = peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert lrs[step] == pytest.approx(expected, rel=1e-12), step
    assert lrs[110] == pytest.approx(peak / 2)


@pytest.mark.parametrize(
    "overrides",
    [
        ["schedule=wsd", "schedule.cooldown=cosine"],
        ["schedule=onecycle"],
        ["schedule=multistep", "schedule.warmup=exponential", "schedule.warmup_steps=30"],
        ["schedule=cosine_restarts", "schedule.min_lr_ratio=0.1"],
        ["schedule=plateau"],
    ],
    ids=lambda o: o[0].split("=")[1],
)
def test_plotted_values_are_the_schedule_times_the_peak(compose_cfg, run_cli, overrides):
    args = ["mode=schedule", "trainer.max_steps=300", "optimizer.lr=0.02", *overrides]
    code, out, err = run_cli(*args)
    assert code == 0, err
    _png, rows = _written(out)
    cfg = compose_cfg(*args)
    multiplier = lr_multiplier(dict(cfg.schedule), 300)
    assert len(rows) == 300
    for row in rows:
        step = int(row["step"])
        assert float(row["multiplier"]) == multiplier(step)  # exact: written with every digit
        assert float(row["lr"]) == 0.02 * multiplier(step)
